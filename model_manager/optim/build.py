"""Build a plan's candidates, check each against the FP32 reference, time them, pick one.

Runs inside the build process (``build_worker``) or, for user factories, in a worker thread.
Every candidate is compared with eager FP32 on real sample photos at the profile's opt shape and
timed with the one benchmark harness within a budget; ``auto`` serves the fastest that passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..cache import BuildOutput
from ..descriptor import ModelDescriptor
from ..errors import EngineBuildError, ModelManagerError, QualityGateError
from ..runners import RunnerInfo, TorchRunner
from .benchmark import benchmark, machine_info
from .candidates import CANDIDATES, BuildSettings, OpenRequest, export_inputs
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
    """Build and measure every candidate of ``plan`` in ``folder``; keep only the served one's files."""
    inputs = [t.numpy() for t in export_inputs(descriptor, settings)]
    reference = TorchRunner(module, descriptor, _info(descriptor, "reference"))(*inputs)
    names = list(plan.candidates)
    if BASELINE not in names:
        names.append(BASELINE)  # always measured: speedups are against eager FP32 in the same run
    results: dict[str, CandidateResult] = {}
    files: dict[str, list[str]] = {}
    for i, name in enumerate(names, 1):
        progress(f"[{i}/{len(names)}] {name}: build, check against FP32, time")
        results[name], files[name] = _measure(name, module, descriptor, folder, settings, inputs, reference)
    decision = choose(list(results.values())) if plan.measured else _single(plan, results)
    chosen = results[decision.chosen]
    for name, names_ in files.items():
        if name != decision.chosen:
            for f in names_:
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


def _measure(
    name: str,
    module: nn.Module,
    descriptor: ModelDescriptor,
    folder: Path,
    settings: BuildSettings,
    inputs: list[np.ndarray],
    reference: np.ndarray,
) -> tuple[CandidateResult, list[str]]:
    cand = CANDIDATES[name]
    result = CandidateResult(
        name, cand.backend, cand.precision, min_psnr_db=gate_for(cand.precision, settings.gates)
    )
    files: list[str] = []
    try:
        files = cand.build(module, descriptor, folder, settings)
        req = OpenRequest(
            folder, files, module, descriptor, _info(descriptor, name), settings.device, settings.num_threads
        )
        with cand.open(req) as runner:
            q = compare(reference, runner(*inputs), descriptor.output.value_range)
            result.psnr_db, result.max_abs_error = q.psnr_db, q.max_abs_error
            result.passed = q.psnr_db >= (result.min_psnr_db or 0.0)
            timing = benchmark(
                lambda: runner(*inputs),
                label=name,
                warmup=settings.warmup,
                iterations=settings.iterations,
                max_seconds=settings.time_budget_s,
                cuda=settings.device == "cuda",
            )
            result.median_ms, result.p90_ms = round(timing.median_ms, 3), round(timing.p90_ms, 3)
    except ModelManagerError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log.warning("candidate %s failed: %s", name, result.error)
    return result, files


def _single(plan: Plan, results: dict[str, CandidateResult]) -> Decision:
    """An explicit strategy: served if it built and passed its gate, else an error."""
    name = plan.candidates[0]
    r = results[name]
    choose(list(results.values()))  # fills in the speedups
    if r.error:
        raise EngineBuildError(f"building {name} failed: {r.error}")
    if not r.passed:
        raise QualityGateError(
            f"{name} reaches {r.psnr_db:.1f} dB against FP32, below its {r.min_psnr_db:.1f} dB gate; "
            "not served"
        )
    reason = f"{name} was requested"
    if r.speedup is not None and r.speedup < 1.0:
        reason += f" (note: {r.speedup:.2f}x eager FP32, i.e. slower)"
    return Decision(name, reason, [x.to_dict() for x in results.values()])


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
