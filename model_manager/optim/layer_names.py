"""One float-layer decision, each engine's names: ONNX node names to PyTorch modules and NNCF patterns.

The float-layer search names ONNX nodes of the TorchScript export (``/res1/conv1/conv2d/Conv``).
The exporter builds those names from the module scopes, one component per module level; a level
inside a ``Sequential`` repeats its parent's attribute path (``/block0/conv0/conv0.0/Conv`` is
module ``block0.conv0.0``). OpenVINO keeps the ONNX node names on the ops it converts them to,
adding suffixes (``/conv1/Conv/WithoutBiases``), so an NNCF pattern per node covers them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from torch import nn


def module_for_node(root: nn.Module, node_name: str) -> str | None:
    """The qualified name of the leaf module that produced ONNX node ``node_name``, or None.

    None for nodes of functional calls (``/Add``, ``/res1/Add``: no leaf module of their own).
    """
    scope = _scope(root, node_name.strip("/").split("/")[:-1])  # the last part is the op (``Conv_1``)
    if scope is None or not scope[0] or any(True for _ in scope[1].children()):
        return None
    return scope[0]


def _scope(root: nn.Module, parts: Sequence[str]) -> tuple[str, nn.Module] | None:
    """The module an ONNX scope (``res1``, ``conv0``, ``conv0.0``) names, with its qualified name."""
    path: list[str] = []
    module, previous = root, ""
    for part in parts:
        child = _child(module, previous, part)
        if child is None:
            return None
        rel, module = child
        path += rel
        previous = part
    return ".".join(path), module


def _child(module: nn.Module, previous: str, part: str) -> tuple[list[str], nn.Module] | None:
    """Resolve one scope component below ``module``: a child name, a dotted path that repeats
    the previous component (``conv0.0`` below ``conv0``, ``conv0.0.0`` below ``conv0.0``), or the
    name of a module called more than once with the exporter's call number (``relu_2``)."""
    candidates = [part]
    if previous and part.startswith(previous + "."):
        candidates.insert(0, part[len(previous) + 1 :])
    if (reused := re.fullmatch(r"(.+)_\d+", part)) is not None:  # a module called again: ``relu_2``
        candidates.append(reused.group(1))
    for rel in candidates:
        try:
            return rel.split("."), module.get_submodule(rel)
        except AttributeError:
            continue
    return None


FX_OP_SEPARATOR = "::"
FX_FUNCTIONAL_OPS = ("Add", "Sub", "Mul", "Resize", "Relu")
"""ONNX op types of functional calls FX quantizes on its own (``x + y``, ``F.interpolate``): such a
node is kept float by its module scope, call kind and index (``quantize_torch``)."""


def fx_functional_op(root: nn.Module, node_name: str) -> str | None:
    """``/res1/Add_1`` -> ``res1::Add::1``: the second ``Add`` called directly in module ``res1``
    (ONNX numbers a scope's nodes of one type in call order); None when it is not one of
    :data:`FX_FUNCTIONAL_OPS` or its scope is not a module."""
    parts = node_name.strip("/").split("/")
    match = re.fullmatch(r"([A-Za-z]+)(?:_(\d+))?", parts[-1])
    if match is None or match.group(1) not in FX_FUNCTIONAL_OPS:
        return None
    scope = _scope(root, parts[:-1])
    if scope is None:
        return None
    return FX_OP_SEPARATOR.join([scope[0], match.group(1), match.group(2) or "0"])


def fx_float_modules(root: nn.Module, node_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(what FX keeps in float: leaf module names and functional ops as ``scope::Op::index``,
    ONNX nodes with neither)."""
    modules: list[str] = []
    unmapped: list[str] = []
    for name in node_names:
        found = module_for_node(root, name) or fx_functional_op(root, name)
        if found is None:
            unmapped.append(name)
        elif found not in modules:
            modules.append(found)
    return modules, unmapped


def nncf_patterns(node_names: Sequence[str]) -> list[str]:
    """NNCF ignored-scope regexes matching each node and the ops OpenVINO made of it."""
    return [f"^{re.escape(name)}(/.*)?$" for name in node_names]


def onnx_node_outputs(onnx_path: Path, node_names: Sequence[str]) -> dict[str, list[str]]:
    """Each named node's output tensor names in an ONNX file (what another engine's graph keeps)."""
    import onnx

    wanted = set(node_names)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {n.name: list(n.output) for n in graph.node if n.name in wanted}
