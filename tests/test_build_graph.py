"""The build graph: each step once per build, content-addressed reuse across builds, one progress channel.

The first tests use small synthetic steps (their counters are the thing checked); the rest build
real models through the manager and read the build report each manifest keeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ModelConfig, ModelManager, QualityGates
from model_manager.cache.intermediates import IntermediateStore
from model_manager.models import all_architectures
from model_manager.optim.build_plan import count_steps
from model_manager.optim.candidates.registry import get_candidate
from model_manager.optim.graph import BuildContext, Files, Step
from model_manager.optim.settings import BuildSettings
from model_manager.progress import BuildEvent, subscribe

from .conftest import small_config


def _ctx(tmp_path: Path, store: IntermediateStore | None = None, **kw) -> BuildContext:
    loaded = all_architectures()["ESPCN"].create(small_config("ESPCN"))
    return BuildContext(
        loaded.module, loaded.descriptor, BuildSettings(), tmp_path / "steps", store=store, **kw
    )


def _counting_steps(calls: list[str]) -> tuple[Step, Step, Step]:
    def make(name: str, value: int):
        def run(ctx: BuildContext, folder: Path) -> int:
            calls.append(name)
            return value + sum(ctx.get(n) for n in needs[name])

        return run

    needs: dict[str, tuple[Step, ...]] = {}
    a = Step("a", "make a", make("a", 1))
    needs["a"] = ()
    b = Step("b", "make b from a", make("b", 10), needs=(a,))
    needs["b"] = (a,)
    c = Step("c", "make c from a and b", make("c", 100), needs=(a, b))
    needs["c"] = (a, b)
    return a, b, c


def test_each_step_runs_once_per_build_and_its_value_is_shared(tmp_path: Path) -> None:
    calls: list[str] = []
    a, b, c = _counting_steps(calls)
    ctx = _ctx(tmp_path)
    assert ctx.get(c) == 100 + 1 + (10 + 1) and ctx.get(b) == 11 and ctx.get(a) == 1
    assert calls == ["a", "b", "c"]
    assert [r.outcome for r in ctx.report.steps] == ["made"] * 3 and ctx.report.made("a") == 1


def test_a_failed_step_is_not_tried_again_by_its_next_consumer(tmp_path: Path) -> None:
    calls: list[str] = []

    def broken(ctx: BuildContext, folder: Path) -> int:
        calls.append("broken")
        raise RuntimeError("the exporter crashed")

    bad = Step("bad", "fail", broken)
    user1 = Step("u1", "use it", lambda ctx, f: ctx.get(bad), needs=(bad,))
    user2 = Step("u2", "use it too", lambda ctx, f: ctx.get(bad), needs=(bad,))
    ctx = _ctx(tmp_path)
    for user in (user1, user2):
        with pytest.raises(RuntimeError, match="the exporter crashed"):
            ctx.get(user)
    assert calls == ["broken"]


def test_a_provided_value_replaces_its_step(tmp_path: Path) -> None:
    calls: list[str] = []
    a, b, _c = _counting_steps(calls)
    ctx = _ctx(tmp_path, provided={a: 5})
    assert ctx.get(b) == 15 and calls == ["b"]
    assert ctx.fingerprint(a) is None  # a caller's value is not content-addressed


def _file_step(calls: list[str], identity: dict) -> Step[Files]:
    def run(ctx: BuildContext, folder: Path) -> Files:
        calls.append("made")
        (folder / "model.bin").write_bytes(b"weights" * 100)
        (folder / "extra.json").write_text("{}")
        return Files(folder, ("model.bin", "extra.json"))

    return Step("thing.bin", "make the thing", run, identity=lambda ctx: identity, reusable=True)


def test_a_content_addressed_step_is_reused_by_the_next_build_and_remade_when_damaged(tmp_path: Path) -> None:
    store = IntermediateStore(tmp_path / "cache")
    calls: list[str] = []
    step = _file_step(calls, {"weights": "abc"})
    first = _ctx(tmp_path / "1", store).get(step)
    ctx2 = _ctx(tmp_path / "2", store)
    again = ctx2.get(step)
    assert calls == ["made"] and ctx2.report.steps[0].outcome == "reused"
    assert again.names == first.names and again.main.read_bytes() == first.main.read_bytes()
    assert again.folder.is_relative_to(store.root)
    other = _ctx(tmp_path / "3", store).get(_file_step(calls, {"weights": "def"}))  # other weights: a miss
    assert calls == ["made", "made"] and other.folder != again.folder
    again.main.write_bytes(b"tampered")  # a damaged intermediate is not used: it is made again
    ctx4 = _ctx(tmp_path / "4", store)
    assert ctx4.get(step).main.read_bytes() == b"weights" * 100
    assert calls == ["made", "made", "made"] and ctx4.report.steps[0].outcome == "made"
    assert all(oct(p.stat().st_mode)[-3:] == "700" for p in (store.root, again.folder.parent))


def test_steps_report_k_of_n_on_the_progress_channel(tmp_path: Path) -> None:
    events: list[BuildEvent] = []
    calls: list[str] = []
    _a, _b, c = _counting_steps(calls)
    ctx = _ctx(tmp_path, events=events.append, label="demo [auto]", total_steps=3)
    ctx.get(c)
    ctx.finish()
    assert [(e.index, e.total, e.step) for e in events[:3]] == [
        (1, 3, "a: make a"),
        (2, 3, "b: make b from a"),
        (3, 3, "c: make c from a and b"),
    ]
    assert events[-1].done and "[2/3] b: make b from a" in events[1].describe()


def test_the_step_count_of_an_auto_build_is_known_before_it_starts() -> None:
    cands = [get_candidate(n) for n in ("int8-static", "int8-static-qop", "onnx", "none")]
    # fp32.reference, fp32.onnx, fp32.quant-ready, int8.ranges, int8.qdq-all.onnx,
    # int8.float-layers, int8.qdq.onnx, int8.qop.onnx, four checks and the timing (inputs, check
    # items, recipe and crops are quick and not counted)
    assert count_steps(cands) == 8 + 4 + 1


# -- real builds through the manager -------------------------------------------------------------


def _manifest(runner) -> dict:
    return json.loads((Path(runner.info.artifact_path) / "manifest.json").read_text())


@pytest.mark.slow
async def test_an_auto_build_exports_fp32_once_and_the_next_strategy_reuses_it(tmp_path: Path) -> None:
    """Issue 15: every candidate of auto used to export (and verify) its own FP32 ONNX; now one export
    per build, and a later build of the same weights (another strategy) reuses it from the cache."""
    events: list[BuildEvent] = []
    unsubscribe = subscribe(events.append)
    config = ModelConfig(
        cache_dir=tmp_path / "cache",
        device="cpu",
        auto_time_budget_s=0.2,
        auto_exclude=("openvino", "openvino-int8", "int8-torch"),
        quality=QualityGates(int8_min_psnr=25.0),  # trained ESPCN loses 1-4 dB to plain INT8 (issue 16)
    )
    try:
        async with ModelManager(config) as m:
            auto = await m.load_optimized_model("super_resolution", "default", "auto")
            onnx = await m.load_optimized_model("super_resolution", "default", "onnx")
            qdq = await m.load_optimized_model("super_resolution", "default", "int8-static")
    finally:
        unsubscribe()
    built = _manifest(auto)["build"]
    planned = {c["name"] for c in auto.info.decision["candidates"]}
    assert {"int8-static", "int8-static-qop", "int8-dynamic", "onnx"} <= planned
    assert built["fp32_exports"] == 1 and built["counts"]["fp32.onnx"] == {"made": 1}
    assert built["counts"]["int8.ranges"] == {"made": 1}  # one calibration for Q/DQ and QOperator
    for later in (onnx, qdq):
        report = _manifest(later)["build"]
        assert report["fp32_exports"] == 0 and report["counts"]["fp32.onnx"] == {"reused": 1}
    assert _manifest(qdq)["build"]["counts"]["int8.ranges"] == {"reused": 1}
    steps = [e for e in events if e.label.endswith("[auto]") and not e.detail and not e.done]
    assert [e.index for e in steps] == list(range(1, len(steps) + 1)) and steps[-1].total == len(steps)
    assert steps[-1].step.startswith("time ") and any(e.done for e in events)
    entry = Path(auto.info.artifact_path)
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [*(f["name"] for f in _manifest(auto)["files"]), "manifest.json"]
    )  # no build folders or other candidates' files left in the entry


async def test_nncf_progress_bars_stay_off_stdout(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nncf")
    config = ModelConfig(cache_dir=tmp_path / "cache", device="cpu", build_in_subprocess=False)
    async with ModelManager(config) as m:
        runner = await m.load_optimized_model("super_resolution", "default", "openvino-int8")
        assert np.isfinite(runner(torch.rand(1, 3, 32, 32)).numpy()).all()
    out, err = capfd.readouterr()
    assert runner.info.strategy == "openvino-int8" and out == ""
    assert "Statistics collection" not in err  # NNCF's own bar: folded into our step, not drawn


def test_the_intermediate_store_never_follows_a_link_out_of_the_cache(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".intermediates").symlink_to(outside)
    store = IntermediateStore(cache)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.onnx").write_bytes(b"x")
    assert store.publish("fp32.onnx", "a" * 64, src, ["f.onnx"]) is None
    assert store.find("fp32.onnx", "a" * 64) is None and store.folders() == []
    assert list(outside.iterdir()) == [] and oct(outside.stat().st_mode)[-3:] == "755"
