"""What to build for a requested optimization on this machine, and why: a pure function of the table.

``plan`` turns a requested name into the candidates to build (with the reason for every fallback),
reading everything about a strategy from ``strategies.py``: its devices, the extra it needs, the
CPU features it needs, its place in ``auto``'s CPU order and CUDA chain. Pure, so the CUDA and
TensorRT branches are tested on a CPU with a described GPU.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..errors import StrategyUnavailableError
from .hardware import Hardware
from .strategies import (
    AUTO,
    BASELINE,
    CPU_AUTO_ORDER,
    CUDA_AUTO_CHAIN,
    install_hint,
    parse_optimization,
    strategy,
)

__all__ = ["BASELINE", "Plan", "plan"]

NO_CXX = "needs a C++ compiler to build (AOTInductor compiles C++) and none runs here: set CXX or install g++"


@dataclass(frozen=True)
class Plan:
    """What to build for a requested optimization on this machine, and why."""

    requested: str
    candidates: tuple[str, ...]
    device: str
    measured: bool
    """True for ``auto`` on a CPU: the candidates are timed and the fastest correct one is chosen."""
    notes: tuple[str, ...] = ()
    fallback: bool = False
    """True for ``auto`` on CUDA: the candidates are a chain, built in order until one builds and
    passes its gate; each failure's reason joins the notes (all failing: eager FP32 is served)."""


def plan(requested: object, hw: Hardware, available: Collection[str], device: str) -> Plan:
    """Candidates for ``requested`` given the hardware and the registered candidate names."""
    name = parse_optimization(requested)
    if name == AUTO:
        return _plan_auto_cuda(hw, available) if device == "cuda" else _plan_auto_cpu(hw, available)
    if name == "quantize":
        target = "fp16" if device == "cuda" else "int8-dynamic"
        resolved = plan(target, hw, available, device)
        note = f"quantize means {target} on {device}"
        return Plan(name, resolved.candidates, device, False, (note, *resolved.notes))
    check_available(name, hw, available, device)
    return Plan(name, (name,), device, False)


def check_available(name: str, hw: Hardware, available: Collection[str], device: str) -> None:
    """StrategyUnavailableError saying why ``name`` cannot be served here (device, extra, CPU, build)."""
    s = strategy(name)
    if device not in s.devices:
        where = "a CUDA GPU" if s.devices == ("cuda",) else " or ".join(s.devices)
        raise StrategyUnavailableError(
            f"{name} needs {where}; this machine serves on the {'CPU' if device == 'cpu' else device}"
            " (try 'auto')"
        )
    if s.extra is not None and not (hw.has_extra(s.extra) and name in available):
        raise StrategyUnavailableError(
            f"{name} needs the {s.extra} package ({install_hint(s.extra)})"
            + (" and a CPU" if device != "cpu" and "cpu" in s.devices else "")
        )
    if s.backend == "onnxruntime" and device == "cuda" and "CUDAExecutionProvider" not in hw.ort_providers:
        raise StrategyUnavailableError(
            f"{name} on CUDA needs onnxruntime-gpu's CUDAExecutionProvider; this onnxruntime offers "
            f"{', '.join(hw.ort_providers)} (it would run on the CPU)"
        )
    if s.native_bf16 and device == "cpu" and not hw.native_bf16:
        raise StrategyUnavailableError(
            f"{name} needs a CPU with native BF16 (AVX-512 BF16 or AMX); this one would emulate it"
        )
    if s.needs_cxx and hw.cxx_compiler is None:
        raise StrategyUnavailableError(f"{name} {NO_CXX}")
    if name not in available:
        raise StrategyUnavailableError(f"optimization {name!r} is not available on {device} in this build")


def _plan_auto_cpu(hw: Hardware, available: Collection[str]) -> Plan:
    candidates = tuple(c for c in CPU_AUTO_ORDER if c in available)
    notes = []
    needs_bf16 = tuple(c for c in candidates if strategy(c).native_bf16)
    if needs_bf16 and not hw.native_bf16:
        candidates = tuple(c for c in candidates if c not in needs_bf16)
        notes.append(
            f"{', '.join(needs_bf16)} skipped: this CPU has no native BF16 (it would be emulated, slowly)"
        )
    needs_cxx = tuple(c for c in candidates if strategy(c).needs_cxx)
    if needs_cxx and hw.cxx_compiler is None:
        candidates = tuple(c for c in candidates if c not in needs_cxx)
        notes.append(f"{', '.join(needs_cxx)} skipped: {NO_CXX}")
    if not hw.has_extra("openvino"):
        notes.append(f"OpenVINO not considered: it needs the openvino extra ({install_hint('openvino')})")
    return Plan(AUTO, candidates, "cpu", True, tuple(notes))


def _plan_auto_cuda(hw: Hardware, available: Collection[str]) -> Plan:
    """The CUDA chain of the table (TensorRT, ONNX Runtime CUDA, PyTorch FP16, AOTInductor), tried in
    order at build time; a link that cannot run here is left out with its reason."""
    notes: list[str] = []
    chain: list[str] = []
    for name in CUDA_AUTO_CHAIN:
        reason = _cuda_obstacle(name, hw, available)
        if reason is None:
            chain.append(name)
        else:
            notes.append(reason)
    return Plan(AUTO, tuple(chain) or (BASELINE,), "cuda", False, tuple(notes), fallback=bool(chain))


def _cuda_obstacle(name: str, hw: Hardware, available: Collection[str]) -> str | None:
    s = strategy(name)
    if s.extra is not None and not hw.has_extra(s.extra):
        return f"{s.backend.replace('tensorrt', 'TensorRT')} not used: the {s.extra} package is not installed"
    if s.backend == "onnxruntime" and "CUDAExecutionProvider" not in hw.ort_providers:
        return "ONNX Runtime CUDA not used: onnxruntime-gpu's CUDAExecutionProvider is not available"
    if s.needs_cxx and hw.cxx_compiler is None:
        return f"{name} not used: it {NO_CXX}"
    if name not in available:
        return f"{name} not used: no {name} candidate in this build"
    return None
