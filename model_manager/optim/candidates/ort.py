"""ONNX Runtime candidates: ``onnx`` (FP32), ``int8-static`` (Q/DQ), ``int8-static-qop``, ``int8-dynamic``.

Each copies one intermediate of the build graph into the entry: the verified FP32 export, or an
INT8 model written from the one calibration and the one float-layer decision the build made (the
Q/DQ file is also what ``tensorrt-int8`` builds its engine from).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...runners import OrtRunner, Runner
from ..graph import BuildContext, Files, Step
from ..int8_steps import (
    INT8_DYNAMIC_ONNX,
    INT8_QDQ_ONNX,
    INT8_QOP_ONNX,
    note_float_layers,
    read_engine_float_layers,
)
from ..intermediates import FP32_ONNX, ONNX_FILE
from .base import Candidate, OpenRequest

FILES = {
    "onnx": ONNX_FILE,
    "int8-dynamic": "model.int8-dynamic.onnx",
    "int8-static": "model.int8-qdq.onnx",
    "int8-static-qop": "model.int8-qop.onnx",
}
STATIC = ("int8-static", "int8-static-qop")
"""Written from the build's float-layer decision (``int8_steps``)."""


def _copy(name: str, step: Step[Files]) -> Callable[[BuildContext, Path], list[str]]:
    def build(ctx: BuildContext, folder: Path) -> list[str]:
        made = ctx.get(step)
        files = made.copy_to(folder)
        if name in STATIC:  # the QOperator writer may have extended the decision for its kernels
            note_float_layers(ctx, name, engine=read_engine_float_layers(made.folder, name))
        return files

    return build


def _opener(name: str) -> Callable[[OpenRequest], Runner]:
    def open_runner(req: OpenRequest) -> Runner:
        return OrtRunner(
            req.folder / FILES[name],
            req.descriptor,
            req.info,
            device=req.device,
            num_threads=req.num_threads,
            options=req.onnxruntime,
        )

    return open_runner


def _candidate(name: str, step: Step[Files]) -> Candidate:
    return Candidate(name, (step,), _copy(name, step), _opener(name), steps=0)


CANDIDATES = (
    _candidate("onnx", FP32_ONNX),
    _candidate("int8-static", INT8_QDQ_ONNX),
    _candidate("int8-static-qop", INT8_QOP_ONNX),
    _candidate("int8-dynamic", INT8_DYNAMIC_ONNX),
)
