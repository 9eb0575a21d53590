"""Keep chosen nodes of an ONNX Q/DQ model in float, and measure what that does to its output.

A Q/DQ model made by ONNX Runtime from an FP32 graph keeps every original node under its own name;
only its inputs are rewired to ``DequantizeLinear`` outputs. "Node N in float" means: N reads the
tensors (activations and weights) the FP32 graph gave it, not their quantized copies. That is a
rewiring of N's inputs, so any set of float nodes is one cheap graph edit of the everything-INT8
model (no recalibration, no second quantization pass), and the served ``int8-static`` file is the
same edit: what the search measured is what is served, and what TensorRT builds from.

:class:`QdqModel` holds the pair (FP32 graph, everything-INT8 Q/DQ graph): its units, their MACs,
and ``with_float(names)``. :class:`QdqEvaluator` scores a float set against reference outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineBuildError
from ..runners.ort_session import session_options
from .mixed_precision import Unit
from .quality import worst_psnr

_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
OUTPUT_PREFIX = "output:"
FLOAT_SUFFIX = "/float"
"""Float copies of weights a float node reads are added under ``<name>/float`` (the Q/DQ graph may
reuse the original name for a dequantized tensor, e.g. a bias)."""


class QdqModel:
    """An FP32 ONNX graph and its everything-INT8 Q/DQ twin (same node names)."""

    def __init__(self, fp32_path: Path, qdq_path: Path) -> None:
        import onnx

        self.fp32 = onnx.load(str(fp32_path))
        self.qdq = onnx.load(str(qdq_path))
        self._fp32_nodes = {n.name: n for n in self.fp32.graph.node}
        self._fp32_weights = {t.name: t for t in self.fp32.graph.initializer}
        missing = [
            n.name
            for n in self.qdq.graph.node
            if n.op_type not in _QDQ_OPS and n.name not in self._fp32_nodes
        ]
        if missing:
            raise EngineBuildError(
                f"the Q/DQ model has nodes its FP32 graph lacks ({missing[:3]}): cannot keep layers in float"
            )

    def unit_names(self) -> list[str]:
        """What can be kept in float, in graph order: nodes that read at least one dequantized
        tensor, then graph outputs written by a ``DequantizeLinear`` (``output:NAME``: the model's
        output itself quantized to 8 bits caps its PSNR near 50 dB)."""
        dequantized = {o for n in self.qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        nodes = [
            n.name
            for n in self.qdq.graph.node
            if n.op_type not in _QDQ_OPS and any(i in dequantized for i in n.input)
        ]
        return nodes + [OUTPUT_PREFIX + o.name for o in self.qdq.graph.output if o.name in dequantized]

    def units(self, macs: dict[str, int]) -> list[Unit]:
        ops = {n.name: n.op_type for n in self.qdq.graph.node}
        return [Unit(name, ops.get(name, "Output"), macs.get(name, 0)) for name in self.unit_names()]

    def coordinate_units(self) -> list[str]:
        """Units that compute sampling coordinates: the backward slice of every ``GridSample``'s grid
        input, down to the first Conv / ConvTranspose / MatMul / Gemm on each path (which stays INT8:
        what it computes is read in float from there on).

        A grid is a position in pixels: 8 bits over a range of tens of pixels misplace a sample by a
        fraction of a pixel, which costs little on smooth crops and a lot on textured ones (IFNet's
        warps: 39 dB on the held-out quarters, 26-31 dB on other photos). These start in float; the
        search decides the rest.
        """
        producers = {o: n for n in self.qdq.graph.node for o in n.output}
        units = set(self.unit_names())
        found: list[str] = []
        stack = [n.input[1] for n in self.qdq.graph.node if n.op_type == "GridSample" and len(n.input) > 1]
        seen: set[str] = set()
        while stack:
            node = producers.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in MAC_OPS or node.op_type in _SHAPE_ONLY:
                continue  # the layer that computes the coordinates stays INT8; its output is read in float
            if node.name in units:
                found.append(node.name)
            stack.extend(node.input)
        order = {name: i for i, name in enumerate(self.unit_names())}
        return sorted(found, key=order.__getitem__)

    def node_names(self, units: Iterable[str]) -> list[str]:
        """The units as node names: an ``output:NAME`` unit is the node that computes that output."""
        names = []
        for unit in units:
            if unit.startswith(OUTPUT_PREFIX):
                dq = _producer(self.qdq, unit[len(OUTPUT_PREFIX) :])
                q = _producer(self.qdq, dq.input[0])
                unit = _producer(self.qdq, q.input[0]).name
            if unit not in names:
                names.append(unit)
        return names

    def with_float(self, names: Iterable[str]) -> Any:
        """A copy of the Q/DQ model whose ``names`` read float tensors; dead Q/DQ nodes removed."""
        import onnx

        floats = set(names)
        model = onnx.ModelProto()
        model.CopyFrom(self.qdq)
        present = {t.name for t in model.graph.initializer}
        for node in model.graph.node:
            if node.name in floats:
                inputs = [self._float_input(i, model, present) for i in self._fp32_nodes[node.name].input]
                del node.input[:]
                node.input.extend(inputs)
        for unit in floats:
            if unit.startswith(OUTPUT_PREFIX):
                _float_output(model, unit[len(OUTPUT_PREFIX) :])
        _drop_dead(model)
        return model

    def _float_input(self, name: str, model: Any, present: set[str]) -> str:
        if name not in self._fp32_weights:
            return name  # an activation (or graph input): the FP32 tensor is still in the graph
        copy = name + FLOAT_SUFFIX
        if copy not in present:
            tensor = model.graph.initializer.add()
            tensor.CopyFrom(self._fp32_weights[name])
            tensor.name = copy
            present.add(copy)
        return copy

    def write(self, names: Iterable[str], target: Path) -> Path:
        import onnx

        onnx.save(self.with_float(names), str(target))
        return target


def _producer(model: Any, tensor: str) -> Any:
    return next(n for n in model.graph.node if tensor in n.output)


def _float_output(model: Any, output: str) -> None:
    """Let graph output ``output`` be the float tensor its Q/DQ pair quantized."""
    dq = _producer(model, output)
    q = _producer(model, dq.input[0])
    tensor = q.input[0]
    for node in model.graph.node:
        for field in (node.input, node.output):
            renamed = [output if name == tensor else name for name in field]
            del field[:]
            field.extend(renamed)
    model.graph.node.remove(dq)
    model.graph.node.remove(q)


def _drop_dead(model: Any) -> None:
    """Remove nodes no graph output depends on, and initializers nothing reads."""
    needed = {o.name for o in model.graph.output}
    kept = []
    for node in reversed(list(model.graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    weights = [t for t in model.graph.initializer if t.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(weights)


MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_SHAPE_ONLY = ("Shape", "Size")
"""Their outputs depend on their input's shape, not its values: a coordinate slice stops there."""


def node_macs(fp32_path: Path, feed: dict[str, np.ndarray]) -> dict[str, int]:
    """MACs of each Conv / ConvTranspose / MatMul / Gemm node for one ``feed`` (shapes from a real run)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32_path))
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in MAC_OPS]
    probes = sorted({n.input[0] for n in nodes} | {n.output[0] for n in nodes})
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=p) for p in probes if p not in known)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    shapes = {n: v.shape for n, v in zip(names, session.run(names, feed))}
    return {n.name: _macs(n, shapes, weights) for n in nodes}


def _macs(node: Any, shapes: dict[str, tuple[int, ...]], weights: dict[str, tuple[int, ...]]) -> int:
    out, inp = shapes[node.output[0]], shapes[node.input[0]]
    w = weights.get(node.input[1]) if len(node.input) > 1 else None
    if node.op_type == "Conv" and w is not None:  # out pixels x (Cin / groups) x kernel
        return int(np.prod(out)) * int(np.prod(w[1:]))
    if node.op_type == "ConvTranspose" and w is not None:  # in pixels scatter (Cout / groups) x kernel
        return int(np.prod(inp)) * int(np.prod(w[1:]))
    return int(np.prod(out)) * int(inp[-1])  # MatMul / Gemm: outputs x inner dimension


class QdqEvaluator:
    """The worst item's PSNR against its reference output, for the Q/DQ model with a given float
    set (ONNX Runtime, CPU): a float set must hold on every crop, not on their average.

    Sessions are made as ``int8-static`` serves them (full graph optimization: Q/DQ fused into
    integer kernels). Simulated Q/DQ (no optimization) is 4x quicker to load on a 700-node graph
    but can differ from the integer kernels: on an AVX2 CPU without VNNI, a model with one 100x
    channel measured 48.8 dB simulated and 27.2 dB served (the u8s8 kernels saturate).
    """

    def __init__(
        self,
        model: QdqModel,
        input_names: Sequence[str],
        items: Sequence[Sequence[np.ndarray]],
        reference: Sequence[np.ndarray],
        value_range: tuple[float, float],
        num_threads: int | None = None,
    ) -> None:
        self.model, self.input_names, self.items = model, list(input_names), items
        self.reference, self.value_range, self.num_threads = reference, value_range, num_threads

    def __call__(self, floats: frozenset[str]) -> float:
        return ort_worst_psnr(
            self.model.with_float(floats).SerializeToString(),
            self.input_names,
            self.items,
            self.reference,
            self.value_range,
            self.num_threads,
        )


def ort_worst_psnr(
    model: bytes | Path,
    input_names: Sequence[str],
    items: Sequence[Sequence[np.ndarray]],
    reference: Sequence[np.ndarray],
    value_range: tuple[float, float],
    num_threads: int | None = None,
) -> float:
    """The worst item's PSNR for an ONNX model opened as ONNX Runtime serves it on the CPU."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, session_options(num_threads), providers=["CPUExecutionProvider"])
    outputs = [session.run(None, dict(zip(input_names, item)))[0] for item in items]
    return worst_psnr(reference, outputs, value_range)
