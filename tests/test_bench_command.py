"""model-manager bench: every strategy against eager FP32 as JSON / table / plot; usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_manager.cli import main
from model_manager.images import read_image

CANDIDATE_FIELDS = {
    "name", "backend", "precision", "median_ms", "p90_ms", "psnr_db", "max_abs_error", "min_psnr_db",
    "passed", "error", "speedup", "build_seconds", "size_bytes", "timed_calls", "rechecked_psnr_db",
    "details",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_MANAGER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODEL_MANAGER_DEVICE", "cpu")


def test_bench_json_has_every_candidate_with_every_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "bench.png"
    argv = ["bench", "super_resolution", "default", "--size", "64x96", "--json", "--plot", str(plot)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input"] == [[1, 3, 64, 96]] and result["model"] == "super_resolution/espcn-x2"
    candidates = {c["name"]: c for c in result["decision"]["candidates"]}
    assert {"none", "onnx", "int8-static"} <= set(candidates)
    for c in candidates.values():
        assert set(c) == CANDIDATE_FIELDS
    assert candidates["none"]["speedup"] == pytest.approx(1.0)
    assert candidates["onnx"]["size_bytes"] > 100_000 and candidates["none"]["size_bytes"] is None
    assert result["decision"]["chosen"] in candidates and candidates[result["decision"]["chosen"]]["passed"]
    assert read_image(plot).ndim == 3 and not list((tmp_path / "cache").glob("**/manifest.json"))


@pytest.mark.slow
def test_bench_table_for_one_strategy_with_a_comparison_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "compare.png"
    argv = [
        "bench",
        "style_transfer",
        "default",
        "--optimization",
        "onnx",
        "--size",
        "64",
        "--compare",
        str(grid),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "style_transfer/sketch [onnx] input 1x3x64x64" in out
    assert "| onnx " in out and "| none " in out and "served: onnx" in out
    picture = read_image(grid)  # input | FP32 | onnx | difference x10, each 64 wide plus a 4-pixel gap
    assert picture.shape == (64, 4 * 68, 3)
    assert picture[:, 3 * 68 : 3 * 68 + 64].mean() < 20  # ONNX matches FP32: a near-black difference


def test_optimize_builds_then_hits_the_cache(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["optimize", "super_resolution", "default", "--optimization", "onnx", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["strategy"], first["cache_hit"]) == ("onnx", False)
    assert main(argv[:-1]) == 0
    assert "onnx (onnxruntime, fp32), cache hit" in capsys.readouterr().out


@pytest.mark.parametrize("size", ["64x", "x64", "0x64", "64x64x3", "big"])
def test_bench_size_usage_errors_exit_2(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "super_resolution", "default", "--size", size])
    assert exc.value.code == 2
    assert "expected HxW with positive integers" in capsys.readouterr().err
