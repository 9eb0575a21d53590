"""model-manager demo end to end on a tiny clip: table fields, cache miss then hit, the output video."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from model_manager.cli import main
from model_manager.video.io import probe_video

FIELDS = {
    "model", "strategy", "backend", "reason", "cache_hit", "load_seconds", "build_seconds", "cache_path",
    "eager_ms", "optimized_ms", "speedup", "decision_speedup", "psnr_db", "max_abs_error", "input", "output",
    "frames_in", "frames_out", "fps",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODEL_MANAGER_DEVICE", "cpu")


def _demo(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    argv = ["demo", "--out", str(tmp_path / "demo"), "--frames", "4", "--size", "64", "--json", *extra]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_demo_builds_auto_then_hits_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _demo(tmp_path, capsys)
    assert set(first) == FIELDS
    assert first["cache_hit"] is False and first["build_seconds"] > 0
    assert first["psnr_db"] >= 35.0 and first["speedup"] > 0  # whatever won passed its gate
    assert first["decision_speedup"] > 0  # measured by the build when it chose
    second = _demo(tmp_path, capsys)
    assert second["cache_hit"] is True and second["cache_path"] == first["cache_path"]
    info = probe_video(second["output"])
    assert (info.frames, info.width, info.height, info.has_audio) == (4, 128, 128, True)


def test_demo_of_interpolation_doubles_the_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _demo(tmp_path, capsys, "--type", "interpolation", "--optimization", "none")
    assert (result["frames_in"], result["frames_out"], result["strategy"]) == (4, 7, "none")
    assert result["psnr_db"] == 150.0  # eager against itself: identical


def test_demo_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--frames", "1", "--out", str(tmp_path / "d")]) == 1
    assert "expected --frames >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--frames", "many"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_demo_names_its_two_speedups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--out", str(tmp_path / "demo"), "--frames", "2", "--size", "64"]
    assert main([*argv, "--optimization", "onnx"]) == 0
    lines = [line.split("  ", 1) for line in capsys.readouterr().out.splitlines()]
    rows = {key.strip(): value.strip() for key, value in lines}
    assert re.fullmatch(r"\d+\.\d\dx", rows["speedup (this run, interleaved)"])
    assert re.fullmatch(r"\d+\.\d\dx", rows["speedup (build-time decision, in the build process)"])
    assert rows["strategy"] == "onnx (onnxruntime)"
