"""What is inside an ONNX file: inputs, outputs, opset, operator histogram, parameters, size on disk."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


def _require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"expected an ONNX file, but {str(p)!r} does not exist")
    return p


def model_size_bytes(path: str | Path) -> int:
    """Bytes on disk of the model file plus the external-data files it references."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    p = _require_file(path)
    proto = onnx.load(str(p), load_external_data=False)
    extra = {
        entry.value
        for t in proto.graph.initializer
        if uses_external_data(t)
        for entry in t.external_data
        if entry.key == "location"
    }
    return p.stat().st_size + sum((p.parent / name).stat().st_size for name in extra)


def _value_info(v: Any) -> dict[str, Any]:
    import onnx

    t = v.type.tensor_type
    dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
    return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(), "shape": dims}


def onnx_model_info(path: str | Path) -> dict[str, Any]:
    """Inputs / outputs (dynamic dims by name), opset, op histogram, parameter count, size on disk."""
    import onnx

    p = _require_file(path)
    proto = onnx.load(str(p), load_external_data=False)
    init_names = {t.name for t in proto.graph.initializer}
    params = 0
    for t in proto.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        params += n
    return {
        "path": str(p),
        "inputs": [_value_info(v) for v in proto.graph.input if v.name not in init_names],
        "outputs": [_value_info(v) for v in proto.graph.output],
        "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "ops": dict(Counter(n.op_type for n in proto.graph.node).most_common()),
        "parameters": params,
        "size_bytes": model_size_bytes(p),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
    }
