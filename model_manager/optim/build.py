"""Build a plan's candidates, check each against the FP32 reference, time them, pick one.

Runs inside the build process (``build_worker``) or, for user factories, in a worker thread.
Every candidate is compared with eager FP32 on real sample photos at the profile's opt shape and
timed with the one benchmark harness within a budget; ``auto`` serves the fastest that passes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..cache import BuildOutput
from ..cache.storage import storage_cause, write_error
from ..descriptor import ModelDescriptor
from ..errors import EngineBuildError, ModelManagerError, QualityGateError
from ..runners import Runner, RunnerInfo, TorchRunner
from .benchmark import benchmark_interleaved, machine_info
from .candidates import CANDIDATES, BuildSettings, OpenRequest, export_inputs
from .progress import reporting, step
from .quality import compare
from .strategy import BASELINE, CandidateResult, Decision, Plan, choose, gate_for

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def build_plan(
    module: nn.Module,
    descriptor: ModelDescriptor,
    plan: Plan,
    folder: Path,
    settings: BuildSettings,
    progress: Progress = lambda _msg: None,
) -> BuildOutput:
    """Build and check every candidate of ``plan`` in ``folder``, time them together, keep the served one."""
    inputs = [t.numpy() for t in export_inputs(descriptor, settings)]
    reference = TorchRunner(module, descriptor, _info(descriptor, "reference"))(*inputs)
    names = list(plan.candidates)
    if BASELINE not in names:
        names.append(BASELINE)  # always measured: speedups are against eager FP32 in the same run
    results: dict[str, CandidateResult] = {}
    files: dict[str, list[str]] = {}
    runners: dict[str, Runner] = {}
    for i, name in enumerate(names, 1):
        prefix = f"[{i}/{len(names) + 1}] {name}"
        progress(f"{prefix}: build and check against FP32")
        with reporting(functools.partial(_prefixed, progress, prefix)):
            results[name], files[name], runner = _build_and_check(
                name, module, descriptor, folder, settings, inputs, reference
            )
        if runner is not None:
            runners[name] = runner
        if files[name]:
            results[name].size_bytes = sum((folder / f).stat().st_size for f in files[name])
    progress(f"[{len(names) + 1}/{len(names) + 1}] timing {', '.join(runners)} (interleaved)")
    _time_together(runners, results, inputs, settings)
    decision = choose(list(results.values())) if plan.measured else _single(plan, results)
    chosen = results[decision.chosen]
    keep = set(files[decision.chosen])
    for f in {f for names_ in files.values() for f in names_} - keep:
        (folder / f).unlink(missing_ok=True)
    return BuildOutput(
        files=files[decision.chosen],
        backend=chosen.backend,
        precision=chosen.precision,
        quality={
            "psnr_db": chosen.psnr_db,
            "max_abs_error": chosen.max_abs_error,
            "min_psnr_db": chosen.min_psnr_db,
        },
        benchmark={
            "median_ms": chosen.median_ms,
            "p90_ms": chosen.p90_ms,
            "speedup": chosen.speedup,
            "eager_median_ms": results[BASELINE].median_ms,
            "input": _shapes(inputs),
            "machine": machine_info(),
        },
        decision=decision.to_dict(),
        notes=list(plan.notes),
    )


def _prefixed(progress: Progress, prefix: str, message: str) -> None:
    progress(f"{prefix}: {message}")


def _build_and_check(
    name: str,
    module: nn.Module,
    descriptor: ModelDescriptor,
    folder: Path,
    settings: BuildSettings,
    inputs: list[np.ndarray],
    reference: np.ndarray,
) -> tuple[CandidateResult, list[str], Runner | None]:
    """Build one candidate and compare it with FP32; a failure is recorded, not raised."""
    cand = CANDIDATES[name]
    result = CandidateResult(
        name, cand.backend, cand.precision, min_psnr_db=gate_for(cand.precision, settings.gates)
    )
    files: list[str] = []
    started = time.perf_counter()
    try:
        files = cand.build(module, descriptor, folder, settings)
        result.build_seconds = round(time.perf_counter() - started, 3)
        req = OpenRequest(
            folder, files, module, descriptor, _info(descriptor, name), settings.device, settings.num_threads
        )
        step("open and compare with FP32 on sample photos")
        runner = cand.open(req)
        q = compare(reference, runner(*inputs), descriptor.output.value_range)
        result.psnr_db, result.max_abs_error = q.psnr_db, q.max_abs_error
        result.passed = q.psnr_db >= (result.min_psnr_db or 0.0)
        return result, files, runner
    except Exception as exc:  # a candidate that cannot be built is reported, not served
        if (cause := storage_cause(exc)) is not None:  # a full disk fails every candidate: stop
            raise write_error(f"the {name} build files", folder, cause) from exc
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning(
            "candidate %s failed: %s", name, result.error, exc_info=not isinstance(exc, ModelManagerError)
        )
        return result, files, None


def _time_together(
    runners: dict[str, Runner],
    results: dict[str, CandidateResult],
    inputs: list[np.ndarray],
    settings: BuildSettings,
) -> None:
    """Time every built candidate round-robin with the harness, then close them."""
    try:
        timings = benchmark_interleaved(
            {name: functools.partial(r, *inputs) for name, r in runners.items()},
            warmup=settings.warmup,
            rounds=settings.iterations,
            max_seconds=settings.time_budget_s * max(1, len(runners)),
            cuda=settings.device == "cuda",
        )
        for name, t in timings.items():
            results[name].median_ms, results[name].p90_ms = round(t.median_ms, 3), round(t.p90_ms, 3)
    finally:
        for runner in runners.values():
            runner.close()


def _single(plan: Plan, results: dict[str, CandidateResult]) -> Decision:
    """An explicit strategy: the fastest of its candidates that built and passed its gate, else an error."""
    choose(list(results.values()))  # fills in the speedups
    mine = [results[n] for n in plan.candidates]
    passed = sorted((r for r in mine if r.passed and not r.error), key=lambda r: r.median_ms or float("inf"))
    if not passed:
        r = mine[0]
        if r.error:
            raise EngineBuildError(f"building {r.name} failed: {r.error}")
        raise QualityGateError(
            f"{r.name} reaches {r.psnr_db:.1f} dB against FP32, below its {r.min_psnr_db:.1f} dB gate; "
            "not served"
        )
    r = passed[0]
    reason = f"{plan.requested} was requested"
    if len(mine) > 1:
        reason += f"; {r.name} was the fastest of {', '.join(x.name for x in mine)} that passed its gate"
    if r.speedup is not None and r.speedup < 1.0:
        reason += f" (note: {r.speedup:.2f}x eager FP32, i.e. slower)"
    return Decision(r.name, reason, [x.to_dict() for x in results.values()])


def _info(descriptor: ModelDescriptor, name: str) -> RunnerInfo:
    return RunnerInfo(descriptor.model_type, name, name, "", "cpu", "")


def _shapes(inputs: list[np.ndarray]) -> list[list[int]]:
    return [list(x.shape) for x in inputs]


def result_to_dict(out: BuildOutput) -> dict[str, Any]:
    return {
        "files": out.files,
        "backend": out.backend,
        "precision": out.precision,
        "quality": out.quality,
        "benchmark": out.benchmark,
        "decision": out.decision,
        "notes": out.notes,
    }
