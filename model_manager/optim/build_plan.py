"""Run a plan through the build graph: build each candidate, check it against FP32, time, choose.

Runs inside the build process (``build_process``) or, for user factory models, in a worker thread.
One :class:`~.graph.BuildContext` serves the whole build, so the FP32 export, the calibration and
every other intermediate is made once, whichever candidates consume it (and reused from earlier
builds of the same weights). Each candidate builds into a folder of its own, is opened and
compared with eager FP32 on real sample photos at the profile's opt shape; the survivors are timed
together with the one harness (clear losers dropped early), and the served candidate's files are
moved into the entry. Every step is reported as k of n on the progress channel.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..cache import BuildOutput
from ..cache.intermediates import IntermediateStore
from ..cache.storage import storage_cause, write_error
from ..descriptor import ModelDescriptor
from ..devices import on_device
from ..errors import EngineBuildError, ModelManagerError, QualityGateError
from ..progress import BuildEvent, detail
from ..runners import Runner
from .benchmark import benchmark_interleaved, machine_info
from .candidates.base import Candidate, OpenRequest
from .candidates.registry import get_candidate
from .decision import CandidateResult, Decision, choose, fill_speedups
from .graph import BuildContext, closure
from .intermediates import (
    CHECK_ITEMS,
    FP32_RECHECK_REFERENCE,
    FP32_REFERENCE,
    INPUTS,
    RECHECK_ITEMS,
    runner_info,
)
from .planner import Plan
from .quality import QualityReport, compare
from .settings import BuildSettings
from .strategies import BASELINE

log = logging.getLogger(__name__)

STEPS_DIR, CANDIDATES_DIR = ".steps", ".candidates"
DROP_SLOWER_THAN = 1.3
"""While timing, a candidate this many times slower than the best so far stops being timed."""


def build_plan(
    module: nn.Module,
    descriptor: ModelDescriptor,
    plan: Plan,
    folder: Path,
    settings: BuildSettings,
    events: Callable[[BuildEvent], None] | None = None,
    label: str = "",
) -> BuildOutput:
    """Build and check every candidate of ``plan`` in ``folder``, time them together, keep the served one."""
    names = list(plan.candidates) + ([BASELINE] if BASELINE not in plan.candidates else [])
    candidates = {name: get_candidate(name) for name in names}
    store = IntermediateStore(settings.intermediates_root) if settings.intermediates_root else None
    ctx = BuildContext(
        module,
        descriptor,
        settings,
        folder / STEPS_DIR,
        store=store,
        events=events,
        label=label,
        total_steps=count_steps(candidates.values()),
    )
    runners: dict[str, Runner] = {}
    try:
        with ctx.reporting(), on_device(settings.torch_device):
            results, files, runners = _build_all(ctx, candidates, folder, plan.fallback)
            _time_together(ctx, runners, results, plan.measured)
            decision = _decide(plan, results)
            if plan.measured and (confirmed := _confirm(ctx, runners, decision.chosen)) is not None:
                decision.confirmation = confirmed
                decision.reason += f"; timed alone against eager FP32: {confirmed['speedup']:.2f}x"
        _keep_served(folder, decision.chosen, files)
    finally:
        for runner in runners.values():
            runner.close()
        shutil.rmtree(folder / STEPS_DIR, ignore_errors=True)
        shutil.rmtree(folder / CANDIDATES_DIR, ignore_errors=True)
        ctx.finish()
    return _output(results, files, decision, plan, ctx)


def count_steps(candidates: Any) -> int:
    """Steps a build of these candidates reports: shared intermediates once, each candidate's own, the
    check of each, and the timing."""
    candidates = list(candidates)
    needs = closure([FP32_REFERENCE, *(s for c in candidates for s in c.needs)])
    own = sum(c.steps for c in candidates)
    return sum(1 for s in needs if not s.quiet) + own + len(candidates) + 1


def _build_all(
    ctx: BuildContext, candidates: dict[str, Candidate], folder: Path, first_passing: bool = False
) -> tuple[dict[str, CandidateResult], dict[str, list[str]], dict[str, Runner]]:
    """Build and check each candidate; ``first_passing`` (a fallback chain): stop at the first that
    builds and passes its gate (eager FP32, the baseline, is still built to time against)."""
    results: dict[str, CandidateResult] = {}
    files: dict[str, list[str]] = {}
    runners: dict[str, Runner] = {}
    for name, cand in candidates.items():
        if first_passing and name != BASELINE and any(r.passed for r in results.values()):
            continue
        cand_folder = folder / CANDIDATES_DIR / name
        cand_folder.mkdir(parents=True, exist_ok=True)
        results[name], files[name], runner = _build_and_check(ctx, cand, cand_folder)
        if runner is not None:
            runners[name] = runner
        if files[name]:
            results[name].size_bytes = sum((cand_folder / f).stat().st_size for f in files[name])
    return results, files, runners


def _build_and_check(
    ctx: BuildContext, cand: Candidate, folder: Path
) -> tuple[CandidateResult, list[str], Runner | None]:
    """Build one candidate and compare it with FP32 on held-out crops; a failure is recorded, not raised."""
    result = CandidateResult(
        cand.name, cand.backend, cand.precision, min_psnr_db=ctx.settings.gate(cand.precision)
    )
    files: list[str] = []
    started = time.perf_counter()
    try:
        files = cand.build(ctx, folder)
        result.build_seconds = round(time.perf_counter() - started, 3)
        ctx.begin(f"check {cand.name} against FP32 on held-out photo crops")
        info = runner_info(ctx, cand.name, cand.backend)
        req = OpenRequest(
            folder,
            files,
            ctx.module,
            ctx.descriptor,
            info,
            ctx.settings.torch_device,
            ctx.settings.num_threads,
            onnxruntime=ctx.settings.onnxruntime,
        )
        runner = cand.open_built(ctx, req) if cand.open_built is not None else cand.open(req)
        _check(ctx, runner, result)
        result.details = ctx.notes.pop(cand.name, None)
        return result, files, runner
    except Exception as exc:  # a candidate that cannot be built is reported, not served
        if (cause := storage_cause(exc)) is not None:  # a full disk fails every candidate: stop
            raise write_error(f"the {cand.name} build files", folder, cause) from exc
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning(
            "candidate %s failed: %s",
            cand.name,
            result.error,
            exc_info=not isinstance(exc, ModelManagerError),
        )
        return result, files, None


RECHECK_BELOW_DB = 1.0
"""A result within this margin of its gate is checked again on more held-out crops before it counts."""


def _check(ctx: BuildContext, runner: Runner, result: CandidateResult) -> None:
    """PSNR on the held-out crops; near the gate, the worse of that and more crops decides."""
    gate = result.min_psnr_db or 0.0
    q = _compare(ctx, runner, ctx.get(CHECK_ITEMS), ctx.get(FP32_REFERENCE))
    if gate <= q.psnr_db < gate + RECHECK_BELOW_DB:
        detail(f"{q.psnr_db:.2f} dB is within {RECHECK_BELOW_DB:g} dB of the gate: checking more crops")
        more = _compare(ctx, runner, ctx.get(RECHECK_ITEMS), ctx.get(FP32_RECHECK_REFERENCE))
        result.rechecked_psnr_db = more.psnr_db
        q = min(q, more, key=lambda r: r.psnr_db)
    result.psnr_db, result.max_abs_error = q.psnr_db, q.max_abs_error
    result.passed = q.psnr_db >= gate


def _compare(
    ctx: BuildContext, runner: Runner, items: list[list[np.ndarray]], reference: list[np.ndarray]
) -> QualityReport:
    outputs = [runner(*item) for item in items]
    return compare(np.concatenate(reference), np.concatenate(outputs), ctx.descriptor.output.value_range)


def _time_together(
    ctx: BuildContext, runners: dict[str, Runner], results: dict[str, CandidateResult], measured: bool
) -> None:
    """Time every built candidate and eager FP32 round-robin (the runners stay open for ``_confirm``).

    For ``auto``, a candidate that failed its gate gets one timed call (it cannot be served; the
    figure is for the report) unless ``settings.time_failed``, one far slower than the best in a
    first probe round keeps that call, and one clearly slower than the best after three visits
    stops being timed (``benchmark_interleaved``'s pruning).
    """
    settings, inputs = ctx.settings, ctx.get(INPUTS)
    brief = [] if settings.time_failed or not measured else [n for n in runners if not results[n].passed]
    ctx.begin(f"time {', '.join(runners)} against each other (interleaved)")
    timings = benchmark_interleaved(
        {name: functools.partial(r, *inputs) for name, r in runners.items()},
        warmup=settings.warmup,
        rounds=settings.iterations,
        max_seconds=settings.time_budget_s * max(1, len(runners) - len(brief)),
        seconds_each=settings.time_budget_s,
        cuda=settings.device == "cuda",
        drop_slower_than=DROP_SLOWER_THAN if measured else None,
        keep=(BASELINE,),
        brief=[n for n in brief if n != BASELINE],
    )
    for name, t in timings.items():
        r = results[name]
        r.median_ms, r.p90_ms, r.timed_calls = round(t.median_ms, 3), round(t.p90_ms, 3), t.iterations


CONFIRM_ROUNDS = 1000
"""Upper bound on the confirmation's timed calls; its time budget ends it first."""


def _confirm(ctx: BuildContext, runners: dict[str, Runner], chosen: str) -> dict[str, Any] | None:
    """The chosen candidate timed again against eager FP32 with every other runner closed.

    The selection timed all candidates side by side: their engines' thread pools loaded, slow
    ones dropped early, so the baseline's calls and the winner's came from different stretches of
    the run. What the entry records as the served speedup is measured as the served runner then
    runs: the two alone in the process, every visit timing both (alternating blocks), for the
    same budget each. ``benchmarks/decision_fresh.py`` checks it against a fresh process.
    """
    if chosen == BASELINE or chosen not in runners or BASELINE not in runners:
        return None
    for name in [n for n in runners if n not in (chosen, BASELINE)]:
        runners.pop(name).close()
    settings, inputs = ctx.settings, ctx.get(INPUTS)
    detail(f"timing {chosen} against eager FP32 again, alone")
    timings = benchmark_interleaved(
        {name: functools.partial(runners[name], *inputs) for name in (chosen, BASELINE)},
        warmup=settings.warmup,
        rounds=CONFIRM_ROUNDS,
        max_seconds=2 * settings.time_budget_s,
        cuda=settings.device == "cuda",
    )
    served, eager = timings[chosen], timings[BASELINE]
    return {
        "median_ms": round(served.median_ms, 3),
        "p90_ms": round(served.p90_ms, 3),
        "eager_median_ms": round(eager.median_ms, 3),
        "eager_p90_ms": round(eager.p90_ms, 3),
        "speedup": round(eager.median_ms / served.median_ms, 3),
        "timed_calls": served.iterations,
    }


def _decide(plan: Plan, results: dict[str, CandidateResult]) -> Decision:
    """``auto`` on a CPU: the fastest correct; a chain: the first that passed; else the one asked for."""
    if plan.measured:
        return choose(list(results.values()))
    if plan.fallback:
        return _first_passing(plan, results)
    return _single(plan, results)


def _first_passing(plan: Plan, results: dict[str, CandidateResult]) -> Decision:
    """The first link of the chain that built and passed its gate; each earlier link's failure said."""
    fill_speedups(list(results.values()))
    failed: list[tuple[str, str]] = []
    for name in plan.candidates:
        r = results.get(name)
        if r is not None and r.passed and not r.error:
            reason = "the first of the CUDA chain that built and passed its gate"
            if failed:
                reason += f" (after {', '.join(n for n, _ in failed)} failed)"
            return Decision(name, reason, [x.to_dict() for x in results.values()], fallbacks=_said(failed))
        if r is not None:
            failed.append((name, _failure(r)))
    return Decision(
        BASELINE,
        "every link of the CUDA chain failed: eager FP32 is served",
        [x.to_dict() for x in results.values()],
        fallbacks=_said(failed),
    )


def _said(failed: list[tuple[str, str]]) -> list[str]:
    return [why for _, why in failed]


def _failure(r: CandidateResult) -> str:
    """Why a candidate was not served, in one line (its build error, or the gate it missed)."""
    if r.error:
        return f"{r.name} failed to build: {r.error}"
    return f"{r.name} reaches {r.psnr_db:.1f} dB against FP32, below its {r.min_psnr_db:.1f} dB gate"


def _single(plan: Plan, results: dict[str, CandidateResult]) -> Decision:
    """An explicit strategy: its candidate if it built and passed its gate, else an error."""
    fill_speedups(list(results.values()))
    r = results[plan.candidates[0]]
    if r.error:
        raise EngineBuildError(f"building {r.name} failed: {r.error}")
    if not r.passed:
        raise QualityGateError(
            f"{r.name} reaches {r.psnr_db:.1f} dB against FP32, below its {r.min_psnr_db:.1f} dB gate"
            f"{_float_layers_said(r)}; not served"
        )
    reason = f"{plan.requested} was requested"
    if r.speedup is not None and r.speedup < 1.0:
        reason += f" (note: {r.speedup:.2f}x eager FP32, i.e. slower)"
    return Decision(r.name, reason, [x.to_dict() for x in results.values()])


def _float_layers_said(r: CandidateResult) -> str:
    """For an INT8 result: what the float-layer search reached and kept in float."""
    d = r.details or {}
    if "float_layers" not in d:
        return ""
    floats, trials = len(d["float_layers"]), d["search_trials"]
    return (
        f" (the float-layer search reached {d['search_psnr_db']:.1f} dB from {d['psnr_all_int8_db']:.1f} dB "
        f"with {floats} of {d['quantized_layers']} layers in float, in {trials} trials)"
    )


def _keep_served(folder: Path, chosen: str, files: dict[str, list[str]]) -> None:
    """Move the served candidate's files from its own folder into the entry folder."""
    for name in files[chosen]:
        (folder / CANDIDATES_DIR / chosen / name).replace(folder / name)


def _output(
    results: dict[str, CandidateResult],
    files: dict[str, list[str]],
    decision: Decision,
    plan: Plan,
    ctx: BuildContext,
) -> BuildOutput:
    chosen = results[decision.chosen]
    report = ctx.report.to_dict()
    report["fp32_exports"] = ctx.report.made("fp32.onnx")
    report["seconds"] = ctx.elapsed
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
            **(decision.confirmation or {}),
            "input": [list(x.shape) for x in ctx.get(INPUTS)],
            "machine": machine_info(),
        },
        decision=decision.to_dict(),
        notes=[*plan.notes, *(f"fell back: {why}" for why in decision.fallbacks)],
        build=report,
    )


def result_to_dict(out: BuildOutput) -> dict[str, Any]:
    """A BuildOutput as JSON-ready data (what the build process sends its parent)."""
    return {
        "files": out.files,
        "backend": out.backend,
        "precision": out.precision,
        "quality": out.quality,
        "benchmark": out.benchmark,
        "decision": out.decision,
        "notes": out.notes,
        "build": out.build,
    }
