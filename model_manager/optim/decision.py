"""Choosing among measured candidates: the fastest that passed its gate, with every candidate's numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .strategies import BASELINE, CPU_AUTO_ORDER


@dataclass
class CandidateResult:
    """One candidate's measurements at the profile's opt shape."""

    name: str
    backend: str
    precision: str
    median_ms: float | None = None
    p90_ms: float | None = None
    psnr_db: float | None = None
    max_abs_error: float | None = None
    min_psnr_db: float | None = None
    passed: bool = False
    error: str | None = None
    speedup: float | None = None
    build_seconds: float | None = None
    #: Bytes of the candidate's artifact files on disk (None: nothing on disk, e.g. eager / BF16).
    size_bytes: int | None = None
    #: Timed calls behind median / p90 (fewer for a candidate dropped early as clearly slower).
    timed_calls: int | None = None
    #: PSNR on more held-out crops, when the first check came within 1 dB of the gate.
    rechecked_psnr_db: float | None = None
    #: What the candidate's build recorded (INT8: the float layers, share of MACs in INT8, ...).
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    """Which candidate is served and why, with every candidate's numbers."""

    chosen: str
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    #: The chosen candidate timed again against eager FP32 with the others closed (``auto`` only;
    #: median_ms, p90_ms, eager_median_ms, eager_p90_ms, speedup, timed_calls): the served figures.
    confirmation: dict[str, Any] | None = None
    #: A fallback chain (``auto`` on CUDA): why each link before the served one was not served.
    fallbacks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(results: Sequence[CandidateResult], order: Sequence[str] = CPU_AUTO_ORDER) -> Decision:
    """The fastest candidate that built, passed its gate and was timed; ties go by ``order``."""
    fill_speedups(results)
    ok = [r for r in results if r.passed and r.median_ms is not None]
    table = [r.to_dict() for r in results]
    if not ok:
        return Decision(BASELINE, "no candidate passed its quality gate; serving eager FP32", table)
    rank = {name: i for i, name in enumerate(order)}
    best = min(ok, key=lambda r: (r.median_ms, rank.get(r.name, len(rank))))
    rejected = [f"{r.name} ({r.error or 'failed its gate'})" for r in results if not r.passed]
    reason = f"{best.name} is the fastest candidate that passed its quality gate"
    if best.speedup:
        reason += f" ({best.speedup:.2f}x eager FP32)"
    if rejected:
        reason += "; rejected: " + ", ".join(rejected)
    return Decision(best.name, reason, table)


def fill_speedups(results: Sequence[CandidateResult]) -> None:
    """Each timed candidate's speedup against eager FP32 timed in the same run."""
    baseline = next((r for r in results if r.name == BASELINE and r.median_ms), None)
    if baseline is None or baseline.median_ms is None:
        return
    for r in results:
        if r.median_ms:
            r.speedup = round(baseline.median_ms / r.median_ms, 3)
