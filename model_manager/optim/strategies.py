"""The one strategy table: every optimization's name, backend, precision, devices, extra and auto rank.

Everything that lists strategies reads this table: the :class:`Optimization` names, the CLI's
``--optimization`` choices, the planner (which candidates ``auto`` measures, in which order of
preference, which extra or CPU feature an explicit name needs), the candidate registry (a plugin
may only register a name that is here) and README's strategy list (``markdown_table``, checked
by a test). Every strategy ``auto`` can serve can also be asked for by name.

Imports nothing of the project but the errors.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from ..errors import UnknownStrategyError

Device = Literal["cpu", "cuda"]
AUTO = "auto"
BASELINE = "none"
ALIASES = {"quantize": "the seed's name: fp16 on CUDA, int8-dynamic on a CPU"}
EXTRAS: dict[str, tuple[str, ...]] = {"openvino": ("openvino", "nncf"), "tensorrt": ("tensorrt",)}
"""Optional extras and the modules each must make importable."""


@dataclass(frozen=True)
class Strategy:
    """One row of the table."""

    name: str
    backend: Literal["torch", "onnxruntime", "openvino", "tensorrt"]
    precision: Literal["fp32", "fp16", "bf16", "int8"]
    devices: tuple[Device, ...]
    extra: str | None
    """The pip extra whose packages it needs (``pip install 'model_manager[EXTRA]'``)."""
    cpu_rank: int | None
    """``auto`` measures it on a CPU; ties between equally fast candidates go to the lower rank."""
    cuda_rank: int | None
    """Its place in ``auto``'s CUDA chain (tried in rank order); None: not in the chain."""
    native_bf16: bool
    """On a CPU it needs native BF16 (AVX-512 BF16 or AMX); elsewhere BF16 is emulated, slowly."""
    summary: str
    compiled: bool = False
    """Its artifact is machine code for this CPU (an OpenVINO blob, an AOTInductor library): the
    cache key carries the CPU, its features and the thread count."""
    needs_cxx: bool = False
    """Its build runs a C++ compiler (AOTInductor); where none is found ``auto`` skips it, saying why."""
    auto_opt_in: bool = False
    """``auto`` measures it on a CPU only where ``ModelConfig.auto_include`` names it (a costly build)."""


_CPU: tuple[Device, ...] = ("cpu",)
_CUDA: tuple[Device, ...] = ("cuda",)
_BOTH: tuple[Device, ...] = ("cpu", "cuda")
# fmt: off
STRATEGIES: tuple[Strategy, ...] = (
    #        name               backend        precision devices extra       cpu  cuda  bf16
    Strategy(BASELINE,          "torch",       "fp32", _BOTH, None,       10,  None, False,
             "eager PyTorch FP32 (the reference every candidate is checked and timed against)"),
    Strategy("fp16",            "torch",       "fp16", _CUDA, None,       None, 3,   False,
             "PyTorch FP16 + channels_last on CUDA"),
    Strategy("bf16",            "torch",       "bf16", _CPU,  None,       5,   None, True,
             "PyTorch autocast BF16 + channels_last"),
    Strategy("int8-dynamic",    "onnxruntime", "int8", _CPU,  None,       7,   None, False,
             "ONNX Runtime dynamic INT8 (ConvInteger); never served when slower"),
    Strategy("int8-static",     "onnxruntime", "int8", _BOTH, None,       1,   None, False,
             "ONNX Runtime static INT8, symmetric Q/DQ (the file TensorRT INT8 builds from)"),
    Strategy("int8-static-qop", "onnxruntime", "int8", _CPU,  None,       2,   None, False,
             "ONNX Runtime static INT8, QOperator (QLinearConv), from the same calibration"),
    Strategy("int8-torch",      "torch",       "int8", _CPU,  None,       3,   None, False,
             "PyTorch FX graph-mode static INT8, from the same calibration crops"),
    Strategy("onnx",            "onnxruntime", "fp32", _BOTH, None,       8,   2,    False,
             "ONNX Runtime FP32 (the CUDA provider on a GPU)"),
    Strategy("openvino",        "openvino",    "fp32", _CPU,  "openvino", 9,   None, False,
             "OpenVINO IR, FP32 (precision hint f32, asked for explicitly)", compiled=True),
    Strategy("openvino-bf16",   "openvino",    "bf16", _CPU,  "openvino", 6,   None, True,
             "OpenVINO IR under the BF16 precision hint", compiled=True),
    Strategy("openvino-int8",   "openvino",    "int8", _CPU,  "openvino", 4,   None, False,
             "OpenVINO IR quantized by NNCF post-training INT8", compiled=True),
    Strategy("aoti",            "torch",       "fp32", _BOTH, None,       11,  4,    False,
             "torch.export + AOTInductor: the FP32 module compiled into a .pt2 package (C++ on a CPU,"
             " Triton on CUDA)", compiled=True, needs_cxx=True, auto_opt_in=True),
    Strategy("tensorrt",        "tensorrt",    "fp16", _CUDA, "tensorrt", None, 1,   False,
             "TensorRT engine from this project's FP16 ONNX"),
    Strategy("tensorrt-int8",   "tensorrt",    "int8", _CUDA, "tensorrt", None, None, False,
             "TensorRT engine from the int8-static Q/DQ ONNX"),
)
# fmt: on
BY_NAME: dict[str, Strategy] = {s.name: s for s in STRATEGIES}
CPU_AUTO_ORDER: tuple[str, ...] = tuple(
    s.name for s in sorted(STRATEGIES, key=lambda s: s.cpu_rank or 0) if s.cpu_rank is not None
)
"""What ``auto`` measures on a CPU, in order of preference when equally fast."""
CUDA_AUTO_CHAIN: tuple[str, ...] = tuple(
    s.name for s in sorted(STRATEGIES, key=lambda s: s.cuda_rank or 0) if s.cuda_rank is not None
)
"""What ``auto`` tries on CUDA, in order, falling back with a reason each time."""
NAMES: tuple[str, ...] = (AUTO, *BY_NAME, *ALIASES)
"""Everything ``optimization=`` accepts, in the table's order."""


def strategy(name: str) -> Strategy:
    """The table row for ``name``; UnknownStrategyError listing the valid names otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {name!r}; valid: {', '.join(BY_NAME)}") from None


def parse_optimization(value: object) -> str:
    """``value`` (any case, ``_`` or ``-``, or an :class:`Optimization`) as a name from :data:`NAMES`."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        norm = value.strip().lower().replace("_", "-")
        if norm in NAMES:
            return norm
    raise UnknownStrategyError(f"unknown optimization {value!r}; valid: {', '.join(NAMES)}")


class _OptimizationNames(str, Enum):
    """What ``load_optimized_model(..., optimization=...)`` accepts; members come from the table."""

    @classmethod
    def parse(cls, value: str | _OptimizationNames) -> _OptimizationNames:
        """Accept a member or its name in any case, with ``_`` or ``-``; else list the valid names."""
        return cls(parse_optimization(value))


Optimization = _OptimizationNames(  # type: ignore[call-overload]
    "Optimization", [(n.upper().replace("-", "_"), n) for n in NAMES], module=__name__
)
"""The names as a ``str`` enum (``Optimization.AUTO``, ``Optimization.INT8_STATIC``, ...)."""


def extra_installed(extra: str) -> bool:
    """Whether every module of an optional extra can be imported (found without importing it)."""
    for module in EXTRAS[extra]:
        if module in sys.modules and sys.modules[module] is None:  # import explicitly blocked
            return False
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def install_hint(extra: str) -> str:
    return f"pip install 'model_manager[{extra}]'"


def markdown_table() -> str:
    """README's strategy list, generated from the table (a test keeps README in step)."""
    rows = [
        "| strategy | backend | precision | devices | needs | auto | what |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in STRATEGIES:
        needs = [f"`{s.extra}` extra"] if s.extra else []
        needs += ["native BF16 CPU"] if s.native_bf16 else []
        needs += ["C++ compiler"] if s.needs_cxx else []
        opt_in = " (opt-in)" if s.auto_opt_in else ""
        auto = ", ".join(
            ([f"CPU #{CPU_AUTO_ORDER.index(s.name) + 1}{opt_in}"] if s.cpu_rank is not None else [])
            + ([f"CUDA #{CUDA_AUTO_CHAIN.index(s.name) + 1}"] if s.cuda_rank is not None else [])
        )
        rows.append(
            f"| `{s.name}` | {s.backend} | {s.precision} | {', '.join(s.devices)} | "
            f"{', '.join(needs) or '-'} | {auto or '-'} | {s.summary} |"
        )
    return "\n".join(rows)
