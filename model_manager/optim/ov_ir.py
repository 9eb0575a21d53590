"""OpenVINO builders: IR from our verified ONNX export, INT8 IR by NNCF, compiled-model blobs.

Named "what from what": ``ir_from_onnx`` converts the verified FP32 ONNX export to an IR (``.xml``
+ ``.bin``, FP32 weights); ``int8_ir_from_ir`` runs NNCF post-training quantization on the same
real-photo calibration crops the ONNX Runtime path uses, keeping the layers of the build's
float-layer decision in float (its ignored scope); ``compiled_blob`` compiles an IR once with
``CACHE_DIR`` set to the build folder, so the blob becomes one of the entry's checksummed files
and a restarted process loads it instead of recompiling. The candidates using them: ``candidates/ov.py``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runners.ov_session import PrecisionHint, Shapes, compile_model, import_openvino, ov_errors


@dataclass(frozen=True)
class OvInt8Recipe:
    """NNCF settings for one architecture; ``ignored`` are regexes on node names kept in float."""

    ignored: tuple[str, ...] = ()
    preset: str = "performance"
    """``performance`` (symmetric activations) or ``mixed`` (asymmetric: signed data around an offset)."""
    fast_bias_correction: bool = True
    activation_ranges: str = "minmax"
    """How activation ranges are estimated: ``minmax``, ``mean_quantile`` or ``histogram`` (clip outliers)."""


OV_INT8_RECIPES: dict[str, OvInt8Recipe] = {}
"""Per-architecture NNCF settings: none. The layers NNCF keeps in float come from the build's
float-layer search, the same for every architecture (benchmarks/mixed_precision.py --hand compares
the hand recipes this table held before: ESPCN conv1, TransformerNet conv1 + deconv3 with the
"mixed" preset and mean-quantile ranges)."""


def ir_from_onnx(onnx_path: Path, xml: Path) -> list[str]:
    """Convert an ONNX model to an FP32 IR (dynamic dims kept); returns the two file names."""
    ov = import_openvino()
    with ov_errors(f"convert {onnx_path.name}"):
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml.name, xml.with_suffix(".bin").name]


def ov_ops_by_node(xml: Path, onnx_outputs: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """For each ONNX node of ``onnx_outputs`` (node -> its output tensors), the OpenVINO ops that
    implement it besides those named after it, for NNCF's ignored scope. Reads the IR once.

    The frontend gives an ONNX node's tensor to the op that writes it, but that op and the ops it
    decomposed the node into may carry made-up names: ``InstanceNormalization`` becomes ``MVN_20``
    (or ``MVN_1004 -> Multiply -> Add``), and NNCF quantizes the MVN's input. Found: the ops that
    write the node's tensors or carry its name, and, walking back from them, ops whose outputs have
    no tensor name (internal to the node), stopping at constants, parameters and other nodes' tensors.
    """
    ov = import_openvino()
    owner = {t: node for node, outputs in onnx_outputs.items() for t in outputs}
    found: dict[str, list[str]] = {node: [] for node in onnx_outputs}
    with ov_errors(f"read {xml.name}"):
        ops = list(ov.Core().read_model(str(xml)).get_ops())
    for op in ops:
        name = op.get_friendly_name()
        named = next((n for n in onnx_outputs if name == n or name.startswith(n + "/")), None)
        node = named or next((owner[t] for o in op.outputs() for t in o.get_names() if t in owner), None)
        if node is None:
            continue
        if named is None and name not in found[node]:
            found[node].append(name)
        _internal_inputs(op, found[node])
    return found


def _internal_inputs(op: Any, found: list[str]) -> None:
    stack = [op]
    while stack:
        for port in stack.pop().inputs():
            src = port.get_source_output().get_node()
            if src.get_type_name() in ("Constant", "Parameter") or any(o.get_names() for o in src.outputs()):
                continue  # a weight, an input, or another node's tensor: outside this node
            if src.get_friendly_name() not in found:
                found.append(src.get_friendly_name())
                stack.append(src)


def int8_ir_from_ir(
    xml: Path, out_xml: Path, calibration: list[list[Any]], recipe: OvInt8Recipe
) -> list[str]:
    """NNCF post-training INT8 of an IR on ``calibration`` (one input list per item)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    ranges = {
        "minmax": RangeEstimatorParametersSet.MINMAX,
        "mean_quantile": RangeEstimatorParametersSet.MEAN_QUANTILE,
        "histogram": RangeEstimatorParametersSet.HISTOGRAM,
    }
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=ranges[recipe.activation_ranges]
    )
    ov = import_openvino()
    with ov_errors(f"quantize {xml.name}"), _nncf_quiet():
        model = ov.Core().read_model(str(xml))
        quantized = nncf.quantize(
            model,
            nncf.Dataset(calibration, lambda item: tuple(item)),
            preset=nncf.QuantizationPreset(recipe.preset),
            subset_size=len(calibration),
            fast_bias_correction=recipe.fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(patterns=list(recipe.ignored), validate=False),
            advanced_parameters=advanced,
        )
        ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return [out_xml.name, out_xml.with_suffix(".bin").name]


@contextmanager
def _nncf_quiet() -> Iterator[None]:
    """NNCF draws its own progress bars (rich, on stdout) and logs every node at INFO.

    The build graph reports the step ("NNCF post-training INT8 on 8 photo crops") through the one
    progress channel, so NNCF's bars are dropped: stdout stays for data (``--json``), stderr for
    our progress line.
    """
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(max(level, logging.WARNING))
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf_log.setLevel(level)


COMPILED_SHAPES_FILE = "ov-compiled-shapes.json"
"""The input shapes an entry's compiled blob was compiled for (``OvRunner(cached_shapes=...)``)."""


def compiled_blob(
    folder: Path, xml: str, hint: PrecisionHint, num_threads: int | None, shapes: Shapes
) -> list[str]:
    """Compile ``xml`` for ``shapes`` (static, as ``OvRunner`` runs them) once with
    ``CACHE_DIR=folder``; return the blob file(s) it wrote and the file naming those shapes."""
    before = set(folder.glob("*.blob"))
    compile_model(folder / xml, hint, num_threads, folder, shapes)
    (folder / COMPILED_SHAPES_FILE).write_text(json.dumps([[list(s) for s in shapes]]))
    return [*sorted(p.name for p in set(folder.glob("*.blob")) - before), COMPILED_SHAPES_FILE]


def compiled_shapes(folder: Path) -> list[Shapes]:
    """The shapes an entry's blob was compiled for (none for entries written before this file)."""
    path = folder / COMPILED_SHAPES_FILE
    if not path.is_file():
        return []
    return [tuple(tuple(int(d) for d in shape) for shape in call) for call in json.loads(path.read_text())]
