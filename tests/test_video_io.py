"""Video files end to end: decode, process, encode with audio; counts, sizes, rates and errors."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from model_manager.cli import main
from model_manager.errors import InvalidInputError
from model_manager.video.clip import pan_zoom_frames, write_clip
from model_manager.video.io import VideoWriter, probe_video, read_frames


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODEL_MANAGER_DEVICE", "cpu")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", count=6, size=(64, 64), fps=6)


def test_the_generated_clip_is_a_real_video_with_audio(clip: Path) -> None:
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.frames, info.has_audio) == (64, 64, Fraction(6), 6, True)
    frames = list(read_frames(clip))
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[-1])  # the camera moves


def test_super_resolution_of_a_video_keeps_count_duration_and_audio(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x2.mp4"
    argv = ["run", "super_resolution", "default", str(clip), str(out), "--optimization", "none", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["frames_in"], result["frames_out"], result["audio"]) == (6, 6, True)
    src, info = probe_video(clip), probe_video(out)
    assert (info.width, info.height, info.frames, info.fps) == (128, 128, 6, src.fps)
    assert info.has_audio and info.duration_s == pytest.approx(src.duration_s, abs=1 / 6)


def test_interpolation_doubles_the_frame_rate_and_keeps_the_duration(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "x2fps.mp4"
    assert main(["run", "interpolation", "default", str(clip), str(out), "--optimization", "none"]) == 0
    src, info = probe_video(clip), probe_video(out)
    assert (info.frames, info.fps, info.width) == (11, 2 * src.fps, 64)
    assert info.duration_s == pytest.approx(src.duration_s, abs=1 / 6) and info.has_audio


def test_an_unreadable_or_missing_video_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    assert main(["run", "super_resolution", "default", str(bad), str(tmp_path / "o.mp4")]) == 1
    err = capsys.readouterr().err
    assert f"cannot read {bad} as a video" in err and "Traceback" not in err and err.count("\n") == 1
    assert (
        main(["run", "super_resolution", "default", str(tmp_path / "gone.mp4"), str(tmp_path / "o.mp4")]) == 1
    )
    assert "does not exist" in capsys.readouterr().err


def test_the_writer_names_a_frame_it_cannot_encode(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "o.mp4", Fraction(10)) as writer:
        with pytest.raises(InvalidInputError, match="even frame sizes for yuv420p, got 63x64"):
            writer.write(np.zeros((64, 63, 3), np.uint8))
        with pytest.raises(InvalidInputError, match="HxWx3 uint8 frame, got float32"):
            writer.write(np.zeros((64, 64, 3), np.float32))


def test_pan_zoom_frames_larger_than_the_photo_have_the_size_asked_for() -> None:
    """720p from a 512x512 photo: the photo is enlarged first (it used to come back 232x256)."""
    frames = pan_zoom_frames("astronaut", 3, (720, 1280))
    assert [f.shape for f in frames] == [(720, 1280, 3)] * 3 and frames[0].dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 1  # it moves
