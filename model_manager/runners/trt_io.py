"""A TensorRT engine's I/O, read and bound: dtypes, profile shapes, addresses, the scale.

Small functions over an engine and an execution context (any objects with TensorRT's methods),
so ``TrtRunner`` stays a lifecycle and the checks here are tested on a CPU with simulated
engines: every dtype is read from the engine (``get_tensor_dtype``), every ``set_input_shape`` /
``set_tensor_address`` result is checked, and the scale of an engine alone comes from its shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidInputError
from .trt_session import failure

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]
"""min, opt, max of one input in the engine's optimization profile 0."""

TORCH_DTYPES: Mapping[str, torch.dtype] = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
}
"""``trt.DataType`` member name -> the torch dtype of a buffer TensorRT reads or writes as it."""


def torch_dtype(dtype: Any, tensor: str, engine: str = "") -> torch.dtype:
    """The torch dtype for a ``trt.DataType`` (or its member name); others are refused by name."""
    name = dtype if isinstance(dtype, str) else str(getattr(dtype, "name", dtype))
    if name not in TORCH_DTYPES:
        where = f"{engine}: " if engine else ""
        raise InvalidInputError(
            f"{where}tensor {tensor!r}: expected a TensorRT type among {', '.join(TORCH_DTYPES)}, got {name}"
        )
    return TORCH_DTYPES[name]


@dataclass(frozen=True)
class EngineIO:
    """An engine's I/O tensors, read once: inputs in order, the one output, dtypes, profiles."""

    label: str
    inputs: tuple[str, ...]
    output: str
    dtypes: Mapping[str, torch.dtype]
    profiles: Mapping[str, Profile]


def read_io(engine: Any, trt: Any, label: str) -> EngineIO:
    """Names, dtypes and profile-0 shapes of ``engine``'s I/O tensors; exactly one output."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    outputs = [n for n in names if n not in inputs]
    if len(outputs) != 1:
        raise InvalidInputError(f"{label}: expected one output tensor, got {outputs}")
    dtypes = {n: torch_dtype(engine.get_tensor_dtype(n), n, label) for n in names}
    profiles = {n: _profile(engine, n) for n in inputs}
    return EngineIO(label, inputs, outputs[0], dtypes, profiles)


def _profile(engine: Any, name: str) -> Profile:
    """min, opt, max of input ``name`` in profile 0, as tuples of ints."""
    lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
    return _shape(lo), _shape(opt), _shape(hi)


def _shape(dims: Any) -> Shape:
    """A ``trt.Dims`` (or any sequence of ints) as a tuple of ints."""
    return tuple(int(d) for d in dims)


def check(ok: bool, what: str, logger: Any = None) -> None:
    """Raise a BackendError for a TensorRT call that returned False, with what TensorRT logged."""
    if not ok:
        raise failure(what, logger)


def set_input_shapes(context: Any, io: EngineIO, shapes: Sequence[Shape], logger: Any = None) -> None:
    """Set every input's shape on ``context``; a refused shape is a BackendError naming it."""
    for name, shape in zip(io.inputs, shapes):
        check(
            context.set_input_shape(name, shape),
            f"set the shape of input {name!r} of {io.label} to {shape}",
            logger,
        )


def output_shape(context: Any, io: EngineIO, logger: Any = None) -> Shape:
    """The output's shape for the inputs' shapes set on ``context``; unresolved is a BackendError."""
    shape = _shape(context.get_tensor_shape(io.output))
    if any(d < 0 for d in shape):
        raise failure(f"resolve the shape of output {io.output!r} of {io.label} (got {shape})", logger)
    return shape


def bind(
    context: Any,
    io: EngineIO,
    tensors: Sequence[torch.Tensor],
    device: torch.device | str,
    logger: Any = None,
) -> torch.Tensor:
    """Set the inputs' shapes and addresses, bind a new output in the engine's dtype; return it."""
    set_input_shapes(context, io, [tuple(t.shape) for t in tensors], logger)
    for name, t in zip(io.inputs, tensors):
        check(
            context.set_tensor_address(name, t.data_ptr()),
            f"set the address of input {name!r} of {io.label} ({tuple(t.shape)}, {t.dtype})",
            logger,
        )
    out = torch.empty(output_shape(context, io, logger), dtype=io.dtypes[io.output], device=device)
    check(
        context.set_tensor_address(io.output, out.data_ptr()),
        f"set the address of output {io.output!r} of {io.label} ({tuple(out.shape)}, {out.dtype})",
        logger,
    )
    return out


def scale_from_shapes(label: str, input_shape: Shape, output_shape: Shape) -> int:
    """The integer factor from an input's H, W to the output's H, W, the same on both axes."""
    if len(input_shape) >= 2 and len(output_shape) >= 2:
        (ih, iw), (oh, ow) = input_shape[-2:], output_shape[-2:]
        if min(ih, iw, oh, ow) >= 1 and oh % ih == 0 and ow % iw == 0 and oh // ih == ow // iw:
            return oh // ih
    raise InvalidInputError(
        f"{label}: expected an output whose H and W are the input's times one integer >= 1, "
        f"got input {input_shape} -> output {output_shape}"
    )


def engine_scale(context: Any, io: EngineIO, logger: Any = None) -> int:
    """The engine's scale: output H, W over the first input's at the profile's opt shapes."""
    opts = [io.profiles[n][1] for n in io.inputs]
    set_input_shapes(context, io, opts, logger)
    return scale_from_shapes(io.label, opts[0], output_shape(context, io, logger))
