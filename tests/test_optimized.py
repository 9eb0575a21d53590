"""load_optimized_model end to end: real builds in a build process, the cache, other processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import (
    ModelConfig,
    ModelManager,
    Optimization,
    OrtRunner,
    QualityGateError,
    QualityGates,
    StrategyUnavailableError,
    TorchRunner,
    UnknownModelError,
)
from model_manager.cache import scan
from model_manager.models import all_architectures

from .conftest import sample_inputs, small_config


def _checkpoint(tmp_path: Path, arch_id: str, seed: int = 0, name: str | None = None) -> Path:
    module = all_architectures()[arch_id].create(small_config(arch_id), seed=seed).module
    path = tmp_path / (name or f"{arch_id}-{seed}.pth")
    torch.save(module.state_dict(), path)
    return path


# These tests are about planning, caching and processes, not engines: OpenVINO's three candidates
# (tested in test_openvino.py) would double every auto build here.
NOT_OPENVINO = ("openvino", "openvino-bf16", "openvino-int8")


def _config(tmp_path: Path, **kw) -> ModelConfig:
    kw.setdefault("auto_exclude", NOT_OPENVINO)
    return ModelConfig(cache_dir=tmp_path / "cache", device="cpu", auto_time_budget_s=0.2, **kw)


async def _manager(
    tmp_path: Path, ckpt: Path, name: str = "small", model_type: str = "super_resolution", **kw
) -> ModelManager:
    manager = ModelManager(_config(tmp_path, **kw))
    await manager.register_checkpoint(model_type, name, ckpt)
    return manager


async def test_auto_builds_once_and_a_new_manager_hits_the_cache(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "ESPCN")
    async with await _manager(tmp_path, ckpt) as m1:
        r1 = await m1.load_optimized_model("super_resolution", "small", "auto")
        assert r1 is await m1.load_optimized_model("super_resolution", "small", "auto")  # pooled
        x = sample_inputs(r1.descriptor, (40, 52))[0]
        out1 = r1(x)
    info = r1.info
    assert info.cache_hit is False and info.build_seconds and info.build_seconds > 0
    assert info.decision["requested"] == "auto" and info.strategy == info.decision["chosen"]
    planned = set(m1._loader.plan_for(Optimization.AUTO).candidates)
    assert {"int8-static", "int8-static-qop", "int8-dynamic", "onnx", "none"} <= planned
    assert {c["name"] for c in info.decision["candidates"]} == planned
    for c in info.decision["candidates"]:
        assert c["error"] is None and c["median_ms"] > 0
        assert c["passed"] == (c["psnr_db"] >= c["min_psnr_db"])
    chosen = next(c for c in info.decision["candidates"] if c["name"] == info.strategy)
    assert chosen["passed"] and chosen["median_ms"] == min(
        c["median_ms"] for c in info.decision["candidates"] if c["passed"]
    )
    assert info.quality["psnr_db"] >= info.quality["min_psnr_db"] and info.speedup and info.cache_key
    confirmed = info.decision["confirmation"]  # the winner timed again alone against eager FP32
    if info.strategy == "none":
        assert confirmed is None
    else:
        assert confirmed["timed_calls"] >= 9 and info.speedup == confirmed["speedup"]
        assert confirmed["speedup"] == round(confirmed["eager_median_ms"] / confirmed["median_ms"], 3)
        assert "timed alone against eager FP32" in info.decision["reason"]
    async with await _manager(tmp_path, ckpt) as m2:
        r2 = await m2.load_optimized_model("super_resolution", "small", "auto")
        np.testing.assert_array_equal(r2(x), out1)
    assert r2.info.cache_hit is True and r2.info.cache_key == info.cache_key
    assert r2.info.decision == info.decision  # stored, not re-measured


async def test_moved_weights_hit_and_changed_weights_miss(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "ESPCN")
    moved = tmp_path / "elsewhere" / "renamed.pth"
    moved.parent.mkdir()
    ckpt.rename(moved)
    other = _checkpoint(tmp_path, "ESPCN", seed=1)
    async with await _manager(tmp_path, _checkpoint(tmp_path, "ESPCN", name="orig.pth")) as m:
        a = await m.load_optimized_model("super_resolution", "small", "onnx")
        await m.register_checkpoint("super_resolution", "small", moved)
        b = await m.load_optimized_model("super_resolution", "small", "onnx")
        await m.register_checkpoint("super_resolution", "small", other)
        c = await m.load_optimized_model("super_resolution", "small", "onnx")
    assert a.info.cache_key == b.info.cache_key and b.info.cache_hit
    assert c.info.cache_key != a.info.cache_key and c.info.cache_hit is False
    assert isinstance(a, OrtRunner) and a.closed  # replaced registration closed the old runner


async def test_none_is_eager_and_uncached_and_cpu_refuses_gpu_strategies(tmp_path: Path) -> None:
    async with await _manager(tmp_path, _checkpoint(tmp_path, "ESPCN")) as m:
        r = await m.load_optimized_model("super_resolution", "small", "none")
        assert isinstance(r, TorchRunner) and r.info.cache_hit is None
        for name in ("fp16", "tensorrt", "tensorrt-int8"):
            with pytest.raises(StrategyUnavailableError, match="needs a CUDA GPU"):
                await m.load_optimized_model("super_resolution", "small", name)
    assert not (tmp_path / "cache").exists() or not await scan(m.cache)


async def test_an_explicit_strategy_below_its_gate_is_not_served(tmp_path: Path) -> None:
    # above any achievable PSNR (capped at 150 dB), for every precision
    gates = QualityGates(fp32_min_psnr=200.0, fp16_min_psnr=200.0, bf16_min_psnr=200.0, int8_min_psnr=200.0)
    async with await _manager(tmp_path, _checkpoint(tmp_path, "ESPCN"), quality=gates) as m:
        with pytest.raises(QualityGateError, match="below its 200.0 dB gate"):
            await m.load_optimized_model("super_resolution", "small", "onnx")
        auto = await m.load_optimized_model("super_resolution", "small", "auto")
    assert auto.info.strategy == "none" and "no candidate passed" in auto.info.decision["reason"]


async def test_a_corrupted_artifact_is_rebuilt_through_the_manager(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "ESPCN")
    async with await _manager(tmp_path, ckpt) as m:
        first = await m.load_optimized_model("super_resolution", "small", "onnx")
    onnx = Path(first.info.artifact_path) / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    async with await _manager(tmp_path, ckpt) as m:
        again = await m.load_optimized_model("super_resolution", "small", "onnx")
        x = sample_inputs(again.descriptor, (32, 32))[0]
        assert again.info.cache_hit is False and again(x).shape == (1, 3, 64, 64)
    assert list((tmp_path / "cache" / ".quarantine").rglob("model.onnx"))


async def test_lru_eviction_never_closes_a_runner_a_caller_still_holds(tmp_path: Path) -> None:
    """Issue 15: the LRU used to close what it evicted, under a caller still using it; now eviction
    only drops the pool's reference, the runner is released when its last holder lets go, and the
    manager closes whatever is still alive when it closes."""
    import gc
    import weakref

    x = sample_inputs(all_architectures()["ESPCN"].create(small_config("ESPCN")).descriptor, (32, 32))[0]
    async with await _manager(tmp_path, _checkpoint(tmp_path, "ESPCN"), max_loaded_models=1) as m:
        a = await m.load_optimized_model("super_resolution", "small", "none")
        b = await m.load_optimized_model("super_resolution", "default", "none")  # evicts a from the pool
        assert not a.closed and not b.closed and a(x).shape == (1, 3, 64, 64)  # a still serves its holder
        c = await m.load_optimized_model("super_resolution", "small", "none")
        assert c is not a and not c.closed and not b.closed  # a new runner for the evicted key
        released = weakref.ref(b)
        del b  # the pool dropped b when c came in; its last holder lets go now
        gc.collect()
        assert released() is None
        held = a
    assert held.closed and c.closed  # the manager closed what was still alive


async def test_unload_drops_a_model_from_memory_and_the_next_load_opens_it_again(tmp_path: Path) -> None:
    async with await _manager(tmp_path, _checkpoint(tmp_path, "ESPCN")) as m:
        a = await m.load_optimized_model("super_resolution", "small", "onnx")
        e = await m.load_optimized_model("super_resolution", "small", "none")
        assert m.unload("super_resolution", "small") == 2 and m.unload("super_resolution", "small") == 0
        b = await m.load_optimized_model("super_resolution", "small", "onnx")
        x = sample_inputs(a.descriptor, (32, 32))[0]
        assert b is not a and b.info.cache_hit and not a.closed and not e.closed
        np.testing.assert_array_equal(a(x), b(x))  # the holder of the unloaded runner still runs
        with pytest.raises(UnknownModelError):
            m.unload("super_resolution", "nothing-like-this")


async def test_a_measured_decision_is_keyed_by_its_thread_count(tmp_path: Path) -> None:
    """auto's timings depend on num_threads: another count is another key; an explicit onnx is not."""
    from model_manager.checkpoint import weights_hash
    from model_manager.optimized_loader import OptimizedLoader

    entry = ModelManager(_config(tmp_path)).registry.get("super_resolution", "default")
    loaded = entry.load()
    digest = weights_hash(loaded.module.state_dict())

    def key(threads: int | None, strategy: str) -> str:
        config = _config(tmp_path, num_threads=threads)
        loader = OptimizedLoader(config, ModelManager(config).cache)
        return loader._key(entry, loaded, loader.plan_for(strategy), digest).digest

    assert key(1, "auto") != key(2, "auto") != key(None, "auto")
    assert key(1, "onnx") == key(2, "onnx")


def test_a_build_that_chooses_differently_is_another_key(tmp_path: Path, monkeypatch) -> None:
    """A cache written by a build whose own choices differ (crops, search crops, give-back) is not
    served as this build's: the build method is part of the key."""
    from model_manager import optimized_loader
    from model_manager.checkpoint import weights_hash

    entry = ModelManager(_config(tmp_path)).registry.get("super_resolution", "default")
    loaded = entry.load()
    digest = weights_hash(loaded.module.state_dict())
    loader = optimized_loader.OptimizedLoader(_config(tmp_path), ModelManager(_config(tmp_path)).cache)
    before = loader._key(entry, loaded, loader.plan_for("int8-torch"), digest)
    assert before.to_dict()["extra"]["method"]["int8_search_items"] == 8
    changed = {**optimized_loader.BUILD_METHOD, "int8_search_items": 4}
    monkeypatch.setattr(optimized_loader, "BUILD_METHOD", changed)
    after = loader._key(entry, loaded, loader.plan_for("int8-torch"), digest)
    assert after.digest != before.digest


@pytest.mark.slow
async def test_warmup_three_models_with_concurrency_two(tmp_path: Path) -> None:
    m = ModelManager(_config(tmp_path))
    specs = []
    for model_type, arch_id in (
        ("super_resolution", "ESPCN"),
        ("style_transfer", "TransformerNet"),
        ("interpolation", "IFNet"),
    ):
        await m.register_checkpoint(model_type, f"small-{arch_id.lower()}", _checkpoint(tmp_path, arch_id))
        specs.append((model_type, f"small-{arch_id.lower()}", "onnx"))
    async with m:
        runners = await m.warmup(specs, concurrency=2)
        assert len(runners) == 3
        for runner in runners:
            out = await runner.infer(*sample_inputs(runner.descriptor, (64, 64)))
            assert np.isfinite(out).all() and runner.info.strategy == "onnx"


async def test_warmup_from_the_config_on_entry(tmp_path: Path) -> None:
    config = _config(tmp_path, warmup=[("super_resolution", "default", "none")])
    async with ModelManager(config) as m:
        runner = await m.load_optimized_model("super_resolution", "default", "none")
        assert (
            not runner.closed and m._pool.get_open(("super_resolution", "espcn-x2", "none", None)) is runner
        )


_CHILD = textwrap.dedent("""
    import asyncio, json, sys
    import numpy as np
    from model_manager import ModelConfig, ModelManager
    from model_manager.samples import sample_batch

    async def main(cache, ckpt, out, n):
        config = ModelConfig(cache_dir=cache, device="cpu", auto_time_budget_s=0.2,
                             auto_exclude=("openvino", "openvino-bf16", "openvino-int8"))
        async with ModelManager(config) as m:
            await m.register_checkpoint("super_resolution", "small", ckpt)
            runners = await asyncio.gather(*(m.load_optimized_model("super_resolution", "small", "auto")
                                             for _ in range(n)))
            x = sample_batch(runners[0].descriptor, (24, 24))[0]
            outs = [r(x) for r in runners]
            np.save(out + ".npy", outs[0])
            infos = [dict(hit=r.info.cache_hit, key=r.info.cache_key, artifact=r.info.artifact_path,
                          same=bool(np.array_equal(o, outs[0]))) for r, o in zip(runners, outs)]
            print(json.dumps(infos))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
""")


def _spawn(tmp_path: Path, ckpt: Path, tag: str, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "cache"), str(ckpt), str(tmp_path / tag), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_three_processes_times_four_coroutines_build_exactly_once(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "ESPCN")
    procs = [_spawn(tmp_path, ckpt, f"p{i}", 4) for i in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    infos = [i for r in results for i in r]
    assert len(infos) == 12 and all(i["same"] for i in infos)
    assert len({i["key"] for i in infos}) == 1
    builders = [r for r in results if not r[0]["hit"]]
    assert len(builders) == 1  # one process built; the other two loaded its entry
    outputs = [np.load(tmp_path / f"p{i}.npy") for i in range(3)]
    assert all(np.array_equal(o, outputs[0]) for o in outputs)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
    assert len(list((tmp_path / "cache").rglob("manifest.json"))) == 1


def test_a_second_process_loads_from_disk(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, "ESPCN")
    asyncio.run(_build_first(tmp_path, ckpt))
    proc = _spawn(tmp_path, ckpt, "second", 1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    (info,) = json.loads(out.strip().splitlines()[-1])
    assert info["hit"] is True
    first = np.load(tmp_path / "first.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "second.npy"), first)


async def _build_first(tmp_path: Path, ckpt: Path) -> None:
    from model_manager.samples import sample_batch

    async with await _manager(tmp_path, ckpt) as m:
        r = await m.load_optimized_model("super_resolution", "small", "auto")
        np.save(tmp_path / "first.npy", r(sample_batch(r.descriptor, (24, 24))[0]))


def test_auto_exclude_removes_candidates_from_the_plan(tmp_path: Path) -> None:
    m = ModelManager(_config(tmp_path, auto_exclude=("int8-torch", "int8-dynamic")))
    planned = m._loader.plan_for(Optimization.AUTO).candidates
    assert "int8-torch" not in planned and "int8-dynamic" not in planned and "onnx" in planned
    assert m._loader.plan_for(Optimization.INT8_DYNAMIC).candidates == (
        "int8-dynamic",
    )  # explicit still works
