"""FP16 ONNX from the verified FP32 ONNX: float16 weights and compute, float32 at the edges.

TensorRT 11 builds strongly typed networks: the ONNX model's own types decide each layer's
precision, so an FP16 engine needs an FP16 ONNX model. ``fp16_onnx_from_onnx`` writes one with
the onnx API (onnxconverter-common is not a dependency):

- **Inputs and outputs stay float32**, as the descriptor says: a Cast to float16 follows each
  graph input and a Cast to float32 precedes each graph output.
- **FP16 compute is the image path**: the nodes the input data flows through. Shape arithmetic
  (``Shape -> Cast -> Div``, IFNet's sampling-grid base from ``Range``) stays float32: float16 is
  exact for integers only up to 2048 and overflows at 65504. A float constant, initializer or
  ``Cast``/``ConstantOfShape`` of shape values becomes float16 when every consumer computes in
  float16 (that rewrites ``Cast(to=FLOAT)`` to ``FLOAT16`` there), else it stays float32.
- **Kept ops stay float32** between casts: ``InstanceNormalization`` by default (its mean and
  variance over a whole image plane lose precision in float16), plus
  ``Fp16Settings.keep_fp32_op_types`` / ``keep_fp32_nodes`` (fnmatch patterns on node names). Their
  weights (scale, bias) stay float32.
- **Inputs ONNX types as float32 only** (Resize ``scales``, anything whose schema type is
  ``tensor(float)``, decided per input from ``onnx.defs``) get float32, so the graph stays valid.

Value infos are dropped (the exporter writes none) and the result passes ``onnx.checker`` with
full type checking. External data mirrors the source (``<name>.data`` beside ``<name>.onnx``).

Verification (``verify_fp16_onnx``) runs the FP32 model in ONNX Runtime and the FP16 model in
``onnx.reference`` by default: numpy, so every float16 op really computes and rounds in float16
(GridSample is overridden with torch's, in float32 on the float16 tensors: the reference one only
knows opset 20's mode names and loops over pixels in Python). It is slow, so use small crops.
ONNX Runtime 1.32's CPU provider does load and run every FP16 graph written here
(``evaluator="onnxruntime"``), but measured on x86 its InsertCastTransformer runs every compute op
(Conv, ConvTranspose, Mul, Add, Relu, Resize, GridSample, Pad, ...) in float32 between inserted
casts; only data movement (Shape, Slice, Concat, Expand) sees float16. Its result reflects the
float16 weights and inputs only (95-115 dB on the small architectures, where the reference gives
62-108 dB), so it checks that the graph loads and runs, not float16 accuracy.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ExportError, InvalidInputError
from .quality import QualityReport, compare

FLOAT, FLOAT16 = 1, 10
"""onnx.TensorProto.FLOAT / FLOAT16."""
DEFAULT_KEEP_FP32_OP_TYPES = ("InstanceNormalization",)
_RETYPABLE_SOURCES = ("Constant", "Cast", "ConstantOfShape")
"""Nodes without data inputs whose float output type is an attribute (rewritten to float16)."""


@dataclass(frozen=True)
class Fp16Settings:
    """Which nodes stay float32 (between casts); everything else on the image path goes float16."""

    keep_fp32_op_types: tuple[str, ...] = DEFAULT_KEEP_FP32_OP_TYPES
    """Op types kept float32; replacing the default drops InstanceNormalization unless listed."""
    keep_fp32_nodes: tuple[str, ...] = ()
    """fnmatch patterns on node names, e.g. ``/conv4/*`` or ``/body/body.16/Conv``."""

    def __post_init__(self) -> None:
        for name in ("keep_fp32_op_types", "keep_fp32_nodes"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise InvalidInputError(f"{name}: expected a tuple of strings, got {value!r}")

    def keeps(self, node: Any) -> bool:
        return node.op_type in self.keep_fp32_op_types or any(
            fnmatch.fnmatchcase(node.name, p) for p in self.keep_fp32_nodes
        )


def fp16_onnx_from_onnx(src: Path, dst: Path, settings: Fp16Settings = Fp16Settings()) -> list[str]:
    """Write the FP16 model of the FP32 ONNX ``src`` to ``dst``; returns the files written (names)."""
    import onnx

    model = _load_fp32(Path(src))
    dst = Path(dst)
    if dst.suffix != ".onnx":
        raise InvalidInputError(f"dst: expected a file name ending in .onnx, got {dst.name!r}")
    external = _has_external_data(model)
    onnx.load_external_data_for_model(model, str(Path(src).parent))
    _convert_graph(model, settings)
    return _save_checked(model, dst, external)


def _load_fp32(src: Path) -> Any:
    """The model without its external weights, after checking it is an FP32 model."""
    import onnx

    if not src.is_file():
        raise InvalidInputError(f"expected an FP32 ONNX file, but {str(src)!r} does not exist")
    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as exc:
        raise InvalidInputError(f"{src.name} is not a readable ONNX model: {exc}") from exc
    edges = [*model.graph.input, *model.graph.output]
    wrong = [(v.name, v.type.tensor_type.elem_type) for v in edges if v.type.tensor_type.elem_type != FLOAT]
    half = [t.name for t in model.graph.initializer if t.data_type in (FLOAT16, onnx.TensorProto.BFLOAT16)]
    if wrong or half:
        got = [f"{n}: {onnx.TensorProto.DataType.Name(t)}" for n, t in wrong] + [f"{n}: 16-bit" for n in half]
        raise InvalidInputError(
            f"{src.name}: expected an FP32 model (float32 inputs, outputs and weights), got "
            f"{', '.join(got[:5])}{' ...' if len(got) > 5 else ''}"
        )
    kinds = {a.type for n in model.graph.node for a in n.attribute}
    if kinds & {onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS}:
        raise InvalidInputError(f"{src.name}: expected a graph without subgraphs (If / Loop / Scan)")
    return model


def _has_external_data(model: Any) -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _convert_graph(model: Any, settings: Fp16Settings) -> None:
    """Decide every float tensor's type, retype weights and sources, insert the casts."""
    _drop_identities(model.graph)
    types = _elem_types(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    half = _half_nodes(model.graph, types, settings)
    wants = _wanted_types(model.graph, types, half, opset)
    produced = _produced_types(model.graph, types, half, wants, opset)
    _retype_sources(model.graph, produced)
    _insert_casts(model.graph, types, wants, produced)
    del model.graph.value_info[:]


def _drop_identities(graph: Any) -> None:
    """Remove Identity nodes (the exporter's copies of shared weights) so weights see their real users."""
    outputs = {v.name for v in graph.output}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs]:
        graph.node.remove(node)
        _rename(graph.node, node.output[0], node.input[0])


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every tensor, from ONNX shape inference on the FP32 model."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _half_nodes(graph: Any, types: Mapping[str, int], settings: Fp16Settings) -> set[int]:
    """Indices of the nodes on the image path (a float input derived from a graph input), not kept."""
    data = {v.name for v in graph.input if types.get(v.name) == FLOAT}
    half: set[int] = set()
    for i, node in enumerate(graph.node):  # ONNX graphs are topologically sorted
        if not any(x in data for x in node.input):
            continue
        data.update(o for o in node.output if types.get(o) == FLOAT)
        if not settings.keeps(node):
            half.add(i)
    return half


def _wanted_types(
    graph: Any, types: Mapping[str, int], half: set[int], opset: int
) -> dict[tuple[int, int], int]:
    """(node index, input index) -> the type that input needs, for every float input."""
    wants = {}
    for i, node in enumerate(graph.node):
        for k, name in enumerate(node.input):
            if name and types.get(name) == FLOAT:
                fp16 = i in half and _schema_allows_fp16(node, opset, k, is_input=True)
                wants[(i, k)] = FLOAT16 if fp16 else FLOAT
    return wants


def _produced_types(
    graph: Any, types: Mapping[str, int], half: set[int], wants: Mapping[tuple[int, int], int], opset: int
) -> dict[str, int]:
    """Tensor -> the type it will have: float16 out of half nodes; sources follow their consumers."""
    consumers: dict[str, list[int]] = {}
    for (i, k), t in wants.items():
        consumers.setdefault(graph.node[i].input[k], []).append(t)
    outputs = {v.name for v in graph.output}

    def follow(name: str) -> int:  # float16 only when every consumer computes in float16
        ts = consumers.get(name, [])
        return FLOAT16 if ts and all(t == FLOAT16 for t in ts) and name not in outputs else FLOAT

    produced = {t.name: follow(t.name) for t in graph.initializer if t.data_type == FLOAT}
    for i, node in enumerate(graph.node):
        for k, name in enumerate(node.output):
            if types.get(name) != FLOAT:
                continue
            if i in half:
                produced[name] = FLOAT16 if _schema_allows_fp16(node, opset, k, is_input=False) else FLOAT
            elif node.op_type in _RETYPABLE_SOURCES and not node.domain:
                produced[name] = follow(name)
            else:
                produced[name] = FLOAT
    for v in graph.input:
        produced.setdefault(v.name, FLOAT)
    return produced


def _schema_allows_fp16(node: Any, opset: int, index: int, *, is_input: bool) -> bool:
    """Whether the op's schema (at the model's opset) types this input / output to allow float16."""
    import onnx

    if node.op_type in ("Cast", "CastLike") and is_input:
        return True
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return False  # unknown (custom) op: leave it float32
    params = list(schema.inputs if is_input else schema.outputs)
    if not params:
        return False
    param = params[min(index, len(params) - 1)]  # a variadic last parameter covers the rest
    allowed = {c.type_param_str: list(c.allowed_type_strs) for c in schema.type_constraints}
    return "tensor(float16)" in allowed.get(param.type_str, [param.type_str])


def _retype_sources(graph: Any, produced: Mapping[str, int]) -> None:
    """Float16 initializers, Constant / ConstantOfShape values and Cast targets where decided so."""
    from onnx import helper, numpy_helper

    for t in graph.initializer:
        if produced.get(t.name) == FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for node in graph.node:
        if not node.output or produced.get(node.output[0]) != FLOAT16:
            continue
        if node.op_type == "Cast":
            _set_attribute(node, helper.make_attribute("to", FLOAT16))
        elif node.op_type in ("Constant", "ConstantOfShape"):
            value = _constant_value(node)
            _set_attribute(
                node, helper.make_attribute("value", numpy_helper.from_array(value.astype(np.float16)))
            )


def _constant_value(node: Any) -> np.ndarray:
    """A Constant's (or ConstantOfShape's) float value, whichever attribute holds it."""
    from onnx import helper, numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_floats"):
            return np.asarray(helper.get_attribute_value(a), dtype=np.float32)
    return np.zeros(1, dtype=np.float32)  # ConstantOfShape's default value


def _set_attribute(node: Any, attribute: Any) -> None:
    kept = [
        a for a in node.attribute if a.name not in ("value", "value_float", "value_floats", attribute.name)
    ]
    del node.attribute[:]
    node.attribute.extend([*kept, attribute])


def _insert_casts(
    graph: Any, types: Mapping[str, int], wants: Mapping[tuple[int, int], int], produced: Mapping[str, int]
) -> None:
    """A Cast wherever a tensor's type differs from what a consumer (or a graph output) needs."""
    from onnx import helper

    casts: dict[tuple[str, int], str] = {}
    nodes: list[Any] = []
    for i, node in enumerate(graph.node):
        for k, name in enumerate(node.input):
            to = wants.get((i, k))
            if to is None or produced.get(name, FLOAT) == to:
                continue
            if (name, to) not in casts:
                casts[name, to] = f"{name}_{'fp16' if to == FLOAT16 else 'fp32'}"
                nodes.append(helper.make_node("Cast", [name], [casts[name, to]], f"{name}/cast", to=to))
            node.input[k] = casts[name, to]
        nodes.append(node)
    for out in graph.output:
        if produced.get(out.name) == FLOAT16:  # the float16 result gets a new name, the output a Cast
            _rename(nodes, out.name, f"{out.name}_fp16")
            nodes.append(
                helper.make_node("Cast", [f"{out.name}_fp16"], [out.name], f"{out.name}/cast", to=FLOAT)
            )
    del graph.node[:]
    graph.node.extend(nodes)


def _rename(nodes: Sequence[Any], old: str, new: str) -> None:
    for node in nodes:
        for seq in (node.input, node.output):
            for k, name in enumerate(seq):
                if name == old:
                    seq[k] = new


def _save_checked(model: Any, dst: Path, external: bool) -> list[str]:
    """Save (external data as ``<stem>.data`` when the source had it) and run the full checker."""
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    data = dst.with_suffix(".data")
    data.unlink(missing_ok=True)
    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=0,
    )
    try:
        onnx.checker.check_model(str(dst), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"FP16 graph {dst.name} is invalid: {str(exc).splitlines()[0]}") from exc
    return [dst.name, data.name] if external else [dst.name]


Evaluator = Literal["reference", "onnxruntime"]


@dataclass(frozen=True)
class Fp16Report:
    """The FP16 model's output against the FP32 model's (0..1-normalised) and what ran the FP16 one."""

    quality: QualityReport
    evaluator: str

    @property
    def psnr_db(self) -> float:
        return self.quality.psnr_db

    @property
    def max_abs_error(self) -> float:
        return self.quality.max_abs_error

    def passes(self, min_psnr_db: float) -> bool:
        return self.quality.passes(min_psnr_db)


def verify_fp16_onnx(
    fp32_path: Path,
    fp16_path: Path,
    inputs: Sequence[np.ndarray],
    value_range: tuple[float, float] = (0.0, 1.0),
    evaluator: Evaluator = "reference",
) -> Fp16Report:
    """Compare the FP16 model's output with the FP32 model's (ONNX Runtime, CPU) on ``inputs``.

    ``inputs`` are float32 arrays in graph input order (real photos: ``samples.sample_batch``). The
    FP16 model runs in ``onnx.reference`` (float16 numerics; keep inputs small) or in ONNX Runtime
    on the CPU (checks it loads and runs, but computes most ops in float32: module docstring).
    """
    from ..runners.ort_session import create_session, run_session

    if evaluator not in ("reference", "onnxruntime"):
        raise InvalidInputError(f"evaluator: expected 'reference' or 'onnxruntime', got {evaluator!r}")
    session = create_session(Path(fp32_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise InvalidInputError(f"inputs: expected {len(names)} array(s) for {names}, got {len(inputs)}")
    feeds = {n: np.asarray(x, dtype=np.float32) for n, x in zip(names, inputs)}
    expected = run_session(session, feeds)[0]
    if evaluator == "onnxruntime":
        got = run_session(create_session(Path(fp16_path), providers=["CPUExecutionProvider"]), feeds)[0]
    else:
        got = _reference_run(Path(fp16_path), feeds)
    return Fp16Report(compare(expected, got, value_range), evaluator)


def _reference_run(path: Path, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """The model's first output from ``onnx.reference`` (numpy; every float16 op computes in float16)."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_grid_sample import GridSample as ReferenceGridSample

    class GridSample(ReferenceGridSample):  # new_ops replace ops by class name
        """torch's grid_sample in float32 on the float16 tensors, result rounded to float16.

        onnx 1.23's reference GridSample knows opset 20's mode names only and loops over pixels in
        Python (minutes for one IFNet frame); interpolating in float32 is what GPUs do too.
        """

        def _run(
            self, x: Any, grid: Any, mode: Any = None, padding_mode: Any = None, align_corners: Any = None
        ) -> tuple[np.ndarray]:
            import torch
            import torch.nn.functional as F

            out = F.grid_sample(
                torch.from_numpy(x.astype(np.float32)),
                torch.from_numpy(grid.astype(np.float32)),
                mode={"linear": "bilinear", "cubic": "bicubic"}.get(mode or "bilinear", mode),
                padding_mode=padding_mode or "zeros",
                align_corners=bool(align_corners),
            )
            return (out.numpy().astype(x.dtype),)

    if not path.is_file():
        raise InvalidInputError(f"expected an FP16 ONNX file, but {str(path)!r} does not exist")
    outputs: Any = ReferenceEvaluator(str(path), new_ops=[GridSample]).run(None, dict(feeds))
    return np.asarray(outputs[0])
