"""Scenario 8: many coroutines share one CPU runner under load.

Promises checked, for a TorchRunner, an OrtRunner over a real export, and the runner
``ModelManager.load_optimized_model("super_resolution", "espcn-x2", optimization="onnx")`` serves:

- 8 coroutines each awaiting ``runner.infer`` on its own real photo crops (several sizes, batch
  1-2) get no error, and every result equals (atol 1e-5) the single sequential call on the same
  input made beforehand: no result goes to the wrong caller.
- Memory stays flat after warm-up: process RSS at the end is at most ``RSS_GROWTH_MB`` above RSS
  after a warm-up round; RSS and peak RSS (``ru_maxrss``) are printed and recorded as properties.

8 x 200 calls per runner run by default (about 3 s a runner here, plus the manager's build);
the ``soak`` variants (``-m reliability``) make it 8 x 2000.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from model_manager import ModelConfig, ModelManager, OrtRunner, Runner, RunnerInfo, TorchRunner
from model_manager.models import all_architectures
from model_manager.optim.onnx_export import ONNXExporter
from model_manager.samples import sample_batch

from ..conftest import small_config

CALLERS = 8
CALLS = 200
SOAK_CALLS = 2000
RSS_GROWTH_MB = 50.0
# (height, width, batch) of each caller's inputs, cycled through its calls
SHAPES = ((24, 24, 1), (32, 40, 2), (48, 32, 1), (40, 56, 2), (64, 48, 1))
_MB = 1024 * 1024


@dataclass
class LoadFigures:
    """What one load run measured."""

    runner: str
    callers: int
    calls: int
    wall_s: float
    rss_after_warmup_mb: float
    rss_end_mb: float
    peak_rss_mb: float

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_after_warmup_mb


def caller_inputs(runner: Runner, caller: int) -> list[np.ndarray]:
    """Crops of the sample photos at a caller-specific offset: no two callers share an input."""
    big = sample_batch(runner.descriptor, (112, 112), batch=2)[0]
    top, left = 3 * caller, 5 * caller
    return [
        np.ascontiguousarray(big[(k + caller) % 2 : (k + caller) % 2 + b, :, top : top + h, left : left + w])
        for k, (h, w, b) in enumerate(SHAPES)
    ]


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / _MB


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _caller(runner: Runner, inputs: list[np.ndarray], expected: list[np.ndarray], calls: int) -> int:
    """``calls`` awaited inferences cycling through ``inputs``; returns how many results were wrong."""
    wrong = 0
    for i in range(calls):
        k = i % len(inputs)
        out = await runner.infer(inputs[k])
        if out.shape != expected[k].shape or not np.allclose(out, expected[k], rtol=0, atol=1e-5):
            wrong += 1
    return wrong


async def run_load(runner: Runner, calls: int) -> LoadFigures:
    """Warm up (one concurrent round), then CALLERS coroutines x ``calls`` calls; check every result."""
    inputs = [caller_inputs(runner, c) for c in range(CALLERS)]
    expected = [[runner(x).copy() for x in xs] for xs in inputs]  # sequential reference, beforehand
    for k in range(len(SHAPES)):  # distinct results per caller, or a mix-up would go unseen
        assert len({expected[c][k].tobytes() for c in range(CALLERS)}) == CALLERS
    warm = await asyncio.gather(*(_caller(runner, xs, ys, len(SHAPES)) for xs, ys in zip(inputs, expected)))
    assert sum(warm) == 0
    rss_warm = _rss_mb()
    start = time.perf_counter()
    wrong = await asyncio.gather(*(_caller(runner, xs, ys, calls) for xs, ys in zip(inputs, expected)))
    wall = time.perf_counter() - start
    assert wrong == [0] * CALLERS, f"results that differ from the sequential call, per caller: {wrong}"
    return LoadFigures(
        f"{runner.info.backend}/{runner.info.name}",
        CALLERS,
        CALLERS * calls,
        round(wall, 2),
        round(rss_warm, 1),
        round(_rss_mb(), 1),
        round(_peak_rss_mb(), 1),
    )


def report(figures: LoadFigures, record_property: Callable[[str, object], None]) -> None:
    """Print the figures (shown with ``-s``), record them, and check memory stayed flat."""
    print(f"\nload {figures}: RSS growth after warm-up {figures.growth_mb:+.1f} MB")
    for key, value in asdict(figures).items():
        record_property(key, value)
    record_property("rss_growth_mb", round(figures.growth_mb, 1))
    assert figures.growth_mb < RSS_GROWTH_MB, f"RSS grew {figures.growth_mb:.1f} MB after warm-up"


# -- runners -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_espcn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Runner]]:
    """A small ESPCN as eager torch and as ONNX Runtime over a real export."""
    lm = all_architectures()["ESPCN"].create(small_config("ESPCN"), seed=0)
    d = lm.descriptor
    dummy = [torch.from_numpy(x) for x in sample_batch(d, (64, 64))]
    report_ = ONNXExporter().export(
        lm.module, dummy, tmp_path_factory.mktemp("load") / "espcn.onnx", descriptor=d
    )
    runners: dict[str, Runner] = {
        "torch": TorchRunner(lm.module, d, RunnerInfo(d.model_type, "ESPCN", "none", "torch", "cpu", "fp32")),
        "onnxruntime": OrtRunner(
            report_.path, d, RunnerInfo(d.model_type, "ESPCN", "onnx", "onnxruntime", "cpu", "fp32")
        ),
    }
    yield runners
    for runner in runners.values():
        runner.close()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
async def test_concurrent_callers_get_their_own_results(
    small_espcn: dict[str, Runner], backend: str, record_property: Callable[[str, object], None]
) -> None:
    """8 callers x 200 calls on one runner: no error, no mixed result, RSS flat after warm-up."""
    report(await run_load(small_espcn[backend], CALLS), record_property)


@pytest.mark.soak
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
async def test_concurrent_callers_soak(
    small_espcn: dict[str, Runner], backend: str, record_property: Callable[[str, object], None]
) -> None:
    """8 callers x 2000 calls on one runner: the same promises over a longer run."""
    report(await run_load(small_espcn[backend], SOAK_CALLS), record_property)


async def _manager_load(tmp_path: Path, calls: int, record_property: Callable[[str, object], None]) -> None:
    async with ModelManager(ModelConfig(cache_dir=tmp_path / "cache", device="cpu")) as manager:
        runner = await manager.load_optimized_model("super_resolution", "espcn-x2", optimization="onnx")
        assert runner.info.backend == "onnxruntime" and runner.info.device == "cpu"
        report(await run_load(runner, calls), record_property)


@pytest.mark.slow
async def test_manager_runner_under_concurrent_callers(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The runner the manager serves (espcn-x2, onnx): 8 callers x 200 calls, same promises."""
    await _manager_load(tmp_path, CALLS, record_property)


@pytest.mark.soak
async def test_manager_runner_soak(tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    """The runner the manager serves (espcn-x2, onnx): 8 callers x 2000 calls, same promises."""
    await _manager_load(tmp_path, SOAK_CALLS, record_property)
