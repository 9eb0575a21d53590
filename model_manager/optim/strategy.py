"""The ``auto`` decision and every explicit strategy, as pure functions of the hardware.

``plan`` turns a requested optimization into the candidates to build on this machine (with the
reason for every fallback); ``choose`` picks, among measured candidates, the fastest that passes
its quality gate. Both are pure, so the CUDA / TensorRT branches are tested on a CPU.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import StrategyUnavailableError
from ..optimization import Optimization
from .hardware import Hardware

# CPU candidates for auto, in order of preference when equally fast. The quantization issue adds
# INT8 and BF16 candidates to the registry; whichever are registered take part.
CPU_AUTO_ORDER = (
    "int8-static",
    "int8-static-qop",
    "int8-torch",
    "openvino-int8",
    "bf16",
    "openvino-bf16",
    "int8-dynamic",
    "onnx",
    "openvino",
    "none",
)
# Candidates that run BF16 arithmetic: only planned where the CPU has it natively.
BF16_CANDIDATES = ("bf16", "openvino-bf16")
OPENVINO_EXTRA = "needs the openvino extra (pip install 'model_manager[openvino]')"
BASELINE = "none"


@dataclass(frozen=True)
class Plan:
    """What to build for a requested optimization on this machine, and why."""

    requested: str
    candidates: tuple[str, ...]
    device: str
    measured: bool
    """True for ``auto``: the candidates are timed and the fastest correct one is chosen."""
    notes: tuple[str, ...] = ()


def plan(requested: Optimization, hw: Hardware, available: Collection[str], device: str) -> Plan:
    """Candidates for ``requested`` given the hardware and the registered candidate names."""
    if requested is Optimization.AUTO:
        return _plan_auto(hw, available, device)
    if requested is Optimization.NONE:
        return Plan(requested.value, (BASELINE,), device, False)
    if requested is Optimization.QUANTIZE:
        target = Optimization.FP16 if device == "cuda" else Optimization.INT8_DYNAMIC
        resolved = plan(target, hw, available, device)
        note = f"quantize means {target.value} on {device}"
        return Plan(requested.value, resolved.candidates, device, False, (note, *resolved.notes))
    name = requested.value
    if name in ("fp16", "tensorrt", "tensorrt-int8") and device != "cuda":
        raise StrategyUnavailableError(
            f"{name} needs a CUDA GPU; this machine serves on the CPU (try 'auto')"
        )
    if name.startswith("tensorrt") and not hw.tensorrt:
        raise StrategyUnavailableError(
            f"{name} needs the tensorrt package (pip install 'model_manager[tensorrt]')"
        )
    if name == "bf16" and device == "cpu" and not hw.native_bf16:
        raise StrategyUnavailableError(
            "bf16 needs a CPU with native BF16 (AVX-512 BF16 or AMX); this one would emulate it"
        )
    if name.startswith("openvino") and name not in available:
        raise StrategyUnavailableError(f"{name} {OPENVINO_EXTRA}" + (" and a CPU" if device != "cpu" else ""))
    if name not in available:
        raise StrategyUnavailableError(f"optimization {name!r} is not available on {device} in this build")
    if name == "openvino" and hw.native_bf16 and "openvino-bf16" in available:
        return Plan(
            name, ("openvino", "openvino-bf16"), device, False, ("the faster of the f32 and bf16 hints",)
        )
    return Plan(name, (name,), device, False)


def _plan_auto(hw: Hardware, available: Collection[str], device: str) -> Plan:
    if device == "cuda":
        return _plan_auto_cuda(hw, available)
    candidates = tuple(c for c in CPU_AUTO_ORDER if c in available)
    notes = []
    if not hw.native_bf16 and any(c in available for c in BF16_CANDIDATES):
        candidates = tuple(c for c in candidates if c not in BF16_CANDIDATES)
        notes.append("bf16 skipped: this CPU has no native BF16 (it would be emulated, slowly)")
    if "openvino" not in available:
        notes.append(f"OpenVINO not considered: it {OPENVINO_EXTRA}")
    return Plan("auto", candidates, "cpu", True, tuple(notes))


def _plan_auto_cuda(hw: Hardware, available: Collection[str]) -> Plan:
    """TensorRT, else ONNX Runtime CUDA, else PyTorch FP16; each fallback says why."""
    notes: list[str] = []
    if hw.tensorrt and "tensorrt" in available:
        return Plan("auto", ("tensorrt",), "cuda", False)
    notes.append(
        "TensorRT not used: "
        + (
            "the tensorrt package is not installed"
            if not hw.tensorrt
            else "no TensorRT builder in this build"
        )
    )
    if "CUDAExecutionProvider" in hw.ort_providers and "onnx" in available:
        return Plan("auto", ("onnx",), "cuda", False, tuple(notes))
    notes.append("ONNX Runtime CUDA not used: onnxruntime-gpu's CUDAExecutionProvider is not available")
    return Plan("auto", ("fp16",), "cuda", False, tuple(notes))


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    """Which candidate is served and why, with every candidate's numbers."""

    chosen: str
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(results: Sequence[CandidateResult], order: Sequence[str] = CPU_AUTO_ORDER) -> Decision:
    """The fastest candidate that built, passed its gate and was timed; ties go by ``order``."""
    baseline = next((r for r in results if r.name == BASELINE and r.median_ms), None)
    for r in results:
        if baseline and r.median_ms:
            r.speedup = round(baseline.median_ms / r.median_ms, 3)  # type: ignore[operator]
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


def gate_for(precision: str, gates: Mapping[str, float]) -> float:
    """The minimum PSNR for a precision (``fp32`` candidates must be near-identical)."""
    return float(gates.get(precision, gates.get("fp32", 50.0)))
