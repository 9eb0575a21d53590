"""Batch video on Ray Data (issue 19): real actors on a local Ray, outputs against the single process.

A local Ray is started once for the module (2 CPUs, no dashboard) and shut down after. Frames come
from a shipped photo under a pan and zoom (``video.clip.pan_zoom_frames``), as the demo makes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model_manager import ModelConfig, ModelManager
from model_manager.distributed.batch import RayRun
from model_manager.images import read_image, write_image
from model_manager.video import process_frames
from model_manager.video.clip import pan_zoom_frames

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _folder(tmp_path: Path, count: int, size: tuple[int, int]) -> tuple[Path, list[np.ndarray]]:
    frames = pan_zoom_frames("chelsea", count, size)
    folder = tmp_path / "frames"
    for i, frame in enumerate(frames):
        write_image(folder / f"{i:04d}.png", frame)
    return folder, frames


async def _single_process(
    config: ModelConfig, model_type: str, strategy: str, frames: list[np.ndarray]
) -> list:
    async with ModelManager(config) as m:
        runner = await m.load_optimized_model(model_type, "default", strategy)
        return [f async for f in process_frames(runner, frames, batch_size=2, factor=2)]


def _written(folder: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted(folder.glob("*.png"))]


def _max_diff(got: list[np.ndarray], expected: list[np.ndarray]) -> int:
    return max(int(np.abs(g.astype(int) - e.astype(int)).max()) for g, e in zip(got, expected))


def _ray_and_single(
    tmp_path: Path, model_type: str, strategy: str, count: int, size: tuple[int, int], **kw: int
) -> tuple[RayRun, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The same folder on Ray (2 actors, batches of 2 rows) and in one process: result, outputs, frames."""
    from model_manager.distributed.batch import run_on_ray

    folder, frames = _folder(tmp_path, count, size)
    config = ModelConfig(cache_dir=tmp_path / "cache", device="cpu", num_threads=1)
    result = run_on_ray(
        model_type, "default", folder, tmp_path / "out", config=config,
        optimization=strategy, actors=2, batch_size=2, **kw,
    )  # fmt: skip
    expected = asyncio.run(_single_process(config, model_type, strategy, frames))
    return result, _written(tmp_path / "out"), expected, frames


@pytest.mark.usefixtures("local_ray")
def test_interpolation_pairs_straddling_batches_match_the_single_process(tmp_path: Path) -> None:
    """7 frames in batches of 2 rows: every pair across a batch boundary is interpolated, in order."""
    result, got, expected, frames = _ray_and_single(tmp_path, "interpolation", "none", 7, (64, 96), factor=2)
    assert result.frames_in == 7 and result.frames_out == len(got) == len(expected) == 13
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert (
        _max_diff(got, expected) <= 1
    )  # eager FP32; batch composition differs (pairs alone vs in batches of two)
    assert all(np.array_equal(got[2 * i], frames[i]) for i in range(7))  # sources passed through


@pytest.mark.usefixtures("local_ray")
def test_super_resolution_through_two_actors_is_built_once_on_the_driver(tmp_path: Path) -> None:
    """The driver builds the ONNX entry; the actors (same cache folder) load it: one build, one entry."""
    result, got, expected, _ = _ray_and_single(tmp_path, "super_resolution", "onnx", 6, (48, 64))
    assert result.strategy == "onnx" and len(got) == 6 and got[0].shape == (96, 128, 3)
    assert _max_diff(got, expected) <= 1
    root = tmp_path / "cache"
    entries = [m for m in root.rglob("manifest.json") if not m.relative_to(root).parts[0].startswith(".")]
    assert len(entries) == 1  # one entry: nobody built a second time


@pytest.mark.usefixtures("local_ray")
def test_the_command_line_runs_a_folder_on_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from model_manager.cli import main

    folder, _ = _folder(tmp_path, 4, (64, 64))
    argv = ["run", "interpolation", "default", str(folder), str(tmp_path / "out"), "--ray", "--actors", "1"]
    assert main([*argv, "--optimization", "none", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ray"]["frames_out"] == 7 and len(_written(tmp_path / "out")) == 7
    assert (
        main(["run", "interpolation", "default", str(folder / "0000.png"), str(tmp_path / "x.png"), "--ray"])
        == 1
    )
    assert "--ray processes a folder of images or a video" in capsys.readouterr().err


@pytest.mark.usefixtures("local_ray")
def test_a_video_on_ray_doubles_its_frame_rate_and_keeps_its_audio(tmp_path: Path) -> None:
    """Interpolation x2 of a clip with audio: 2N - 1 frames at twice the rate, the audio carried over."""
    from model_manager.distributed.batch import run_on_ray
    from model_manager.video.clip import write_clip
    from model_manager.video.io import probe_video

    clip = write_clip(tmp_path / "clip.mp4", count=6, size=(64, 64), fps=6)
    config = ModelConfig(cache_dir=tmp_path / "cache", device="cpu", num_threads=1)
    out = tmp_path / "x2fps.mp4"
    run_on_ray(
        "interpolation", "default", clip, out, config=config, optimization="none", actors=1, batch_size=2
    )
    src, info = probe_video(clip), probe_video(out)
    assert (info.frames, info.fps, info.width) == (11, 2 * src.fps, 64)
    assert info.has_audio and info.duration_s == pytest.approx(src.duration_s, abs=1 / 6)
