"""The model-manager command line: help, list --json, run on a real sample image, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager.cli import main
from model_manager.images import read_image, write_image
from model_manager.models import all_architectures
from model_manager.samples import load_sample

from .conftest import small_config


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_MANAGER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODEL_MANAGER_DEVICE", "cpu")


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["--version"], ["run", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    assert "model-manager" in capsys.readouterr().out


def test_usage_error_exits_two() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_list_json_is_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model_type"] for r in rows} == {"style_transfer", "super_resolution", "interpolation"}
    assert all("descriptor" in r and "profile" in r["descriptor"] for r in rows)


def test_list_table_marks_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--type", "super_resolution"]) == 0
    out = capsys.readouterr().out
    assert "espcn-x2 (default)" in out and "RealESRGAN_x4plus" in out


def test_run_super_resolution_on_a_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sr.png"
    assert (
        main(
            [
                "run",
                "super_resolution",
                "default",
                "sample:chelsea",
                str(out),
                "--json",
                "--optimization",
                "none",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    h, w = load_sample("chelsea").shape[:2]
    assert read_image(out).shape == (2 * h, 2 * w, 3)
    assert result["runner"]["strategy"] == "none"


def test_run_interpolation_needs_two_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "interpolation", "default", "sample:chelsea", str(tmp_path / "i.png")]) == 1
    assert "needs two frames" in capsys.readouterr().err


def test_run_with_a_users_checkpoint(tmp_path: Path) -> None:
    ref = all_architectures()["TransformerNet"].create(small_config("TransformerNet"))
    torch.save(ref.module.state_dict(), tmp_path / "mystyle.pth")
    out = tmp_path / "styled.png"
    code = main(
        [
            "run",
            "style_transfer",
            "mystyle",
            "sample:coffee",
            str(out),
            "--checkpoint",
            str(tmp_path / "mystyle.pth"),
            "--optimization",
            "none",
        ]
    )
    assert code == 0
    assert read_image(out).shape == load_sample("coffee").shape


def test_errors_exit_one_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "super_resolution", "nope", "sample:coffee", str(tmp_path / "x.png")]) == 1
    assert "no super_resolution model named 'nope'" in capsys.readouterr().err
    assert (
        main(["run", "super_resolution", "default", str(tmp_path / "missing.png"), str(tmp_path / "x.png")])
        == 1
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.pth")]) == 1


def test_inspect_reports_the_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = all_architectures()["RRDBNet"].create(small_config("RRDBNet") | {"scale": 2})
    torch.save({"params_ema": ref.module.state_dict()}, tmp_path / "x2.pth")
    assert main(["inspect", str(tmp_path / "x2.pth"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["architecture"] == "RRDBNet" and result["descriptor"]["scale"] == 2


def test_console_script_is_installed() -> None:
    exe = shutil.which("model-manager") or str(Path(sys.executable).parent / "model-manager")
    proc = subprocess.run([exe, "samples", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {s["name"] for s in json.loads(proc.stdout)} == {"astronaut", "coffee", "chelsea", "rocket"}


def test_cache_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = all_architectures()["ESPCN"].create(small_config("ESPCN"))
    torch.save(ref.module.state_dict(), tmp_path / "e.pth")
    assert (
        main(
            [
                "run",
                "super_resolution",
                "e",
                "sample:coffee",
                str(tmp_path / "o.png"),
                "--checkpoint",
                str(tmp_path / "e.pth"),
                "--optimization",
                "onnx",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["cache", "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (entry,) = listed["entries"]
    assert entry["entry"].startswith("super_resolution/e/") and entry["backend"] == "onnxruntime"
    assert main(["cache", "verify"]) == 0 and "ok " in capsys.readouterr().out
    onnx = Path(entry["path"]) / "model.onnx"
    onnx.write_bytes(b"broken")
    assert main(["cache", "verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["entries"][0]["moved_to"]
    with open(tmp_path / "e.pth", "rb") as not_a_terminal:
        monkeypatch.setattr("sys.stdin", not_a_terminal)
        assert main(["cache", "clear"]) == 1 and "without --yes" in capsys.readouterr().err
    assert main(["cache", "clear", "--yes"]) == 0
    assert main(["cache", "prune", "--max-size", "1M"]) == 0
    with pytest.raises(SystemExit) as info:
        main(["cache", "prune", "--max-size", "lots"])
    assert info.value.code == 2


def _frame_folder(folder: Path, count: int, size: int = 64) -> Path:
    """``count`` crops of a real photo panning right, saved as PNGs."""
    folder.mkdir()
    photo = load_sample("astronaut")
    for k in range(count):
        write_image(
            folder / f"f{k}.png", np.ascontiguousarray(photo[30 : 30 + size, 10 + 4 * k : 10 + 4 * k + size])
        )
    return folder


def test_run_super_resolves_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _frame_folder(tmp_path / "in", 3)
    argv = ["run", "super_resolution", "default", str(src), str(tmp_path / "out"), "--optimization", "none"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["frames_in"], result["frames_out"]) == (3, 3)
    outputs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outputs) == 3 and all(read_image(p).shape == (128, 128, 3) for p in outputs)


def test_run_interpolates_a_folder_by_the_factor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _frame_folder(tmp_path / "in", 3)
    argv = ["run", "interpolation", "default", str(src), str(tmp_path / "out"), "--optimization", "none"]
    assert main([*argv, "--factor", "3"]) == 0
    assert "wrote 7 frames (3 in)" in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("*.png"))) == 7


def test_run_on_a_folder_without_images_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["run", "super_resolution", "default", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "expected image files" in err and "found none" in err and "Traceback" not in err
