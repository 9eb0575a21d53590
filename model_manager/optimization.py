"""Optimization strategy names, their aliases, and which ones this build can serve."""

from __future__ import annotations

from enum import Enum

from .errors import UnknownStrategyError


class Optimization(str, Enum):
    """What ``load_optimized_model(..., optimization=...)`` accepts."""

    AUTO = "auto"
    NONE = "none"
    FP16 = "fp16"
    BF16 = "bf16"  # CPU autocast, only where the CPU has native BF16
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"
    ONNX = "onnx"
    OPENVINO = "openvino"  # FP32 or BF16 hint, whichever passes its gate faster (the openvino extra)
    OPENVINO_INT8 = "openvino-int8"  # NNCF post-training INT8 (the openvino extra)
    TENSORRT = "tensorrt"
    TENSORRT_INT8 = "tensorrt-int8"
    QUANTIZE = "quantize"  # the seed's name: FP16 on CUDA, dynamic INT8 on a CPU

    @classmethod
    def parse(cls, value: str | Optimization) -> Optimization:
        """Accept a member or its name in any case, with ``_`` or ``-``; else list the valid names."""
        if isinstance(value, Optimization):
            return value
        if isinstance(value, str):
            norm = value.strip().lower().replace("_", "-")
            for member in cls:
                if member.value == norm:
                    return member
        valid = ", ".join(m.value for m in cls)
        raise UnknownStrategyError(f"unknown optimization {value!r}; valid: {valid}")
