"""OpenVINO candidates: ``openvino`` (f32 hint), ``openvino-bf16`` (bf16 hint), ``openvino-int8`` (NNCF).

All three start from the build's verified FP32 export: the FP32 IR is converted once per build
(and reused by later builds of the same export); the INT8 IR is NNCF post-training quantization
on the build's calibration crops, keeping the layers of the build's float-layer decision
(``int8_steps``) in float as NNCF's ignored scope. Each
candidate compiles its IR once into the entry (``CACHE_DIR``), so restarts load the blob.
Registered only where the ``openvino`` extra is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...cache.key import toolchain_versions
from ...progress import detail
from ...runners import OvRunner, Runner
from ...runners.ov_session import PrecisionHint
from ..graph import BuildContext, Files, Step
from ..int8_steps import (
    INT8_FLOAT_LAYERS,
    SEARCH_NEEDS,
    best_trial,
    engine_float_layers,
    float_layers,
    float_nodes,
    is_output_unit,
    keep_trial,
    note_float_layers,
    read_engine_float_layers,
    score_outputs,
    write_engine_float_layers,
)
from ..intermediates import CALIBRATION_CROPS, FP32_ONNX, export_inputs, runner_info
from ..layer_names import nncf_patterns, onnx_node_outputs
from ..ov_ir import (
    OV_INT8_RECIPES,
    OvInt8Recipe,
    compiled_blob,
    compiled_shapes,
    int8_ir_from_ir,
    ir_from_onnx,
    ov_ops_by_node,
)
from .base import Candidate, OpenRequest

ENGINE = "openvino-int8"
IR_XML = "model.ov.xml"
INT8_XML = "model.ov-int8.xml"
INT8_BIN = "model.ov-int8.bin"
HINTS: dict[str, PrecisionHint] = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}


def _calibration(ctx: BuildContext) -> OvInt8Recipe:
    """NNCF's calibration settings for the architecture (preset, range estimator); no float layers."""
    return OV_INT8_RECIPES.get(ctx.descriptor.architecture, OvInt8Recipe())


def _recipe(ctx: BuildContext, floats: Iterable[str], ops: Mapping[str, list[str]]) -> OvInt8Recipe:
    """The calibration settings with ``floats`` (ONNX node names) as NNCF's ignored scope: the ops
    named after them and the anonymous ops the frontend decomposed them into (``ops``, by node)."""
    nodes = float_nodes(list(floats))
    internal = [op for node in nodes for op in ops.get(node, [])]
    return replace(_calibration(ctx), ignored=tuple(nncf_patterns([*nodes, *internal])))


def _ops_by_node(ctx: BuildContext) -> dict[str, list[str]]:
    """The OpenVINO ops behind every node the decision or its extension may keep float (one IR read)."""
    nodes = float_nodes(float_layers(ctx).ranking)
    return ov_ops_by_node(ctx.get(OV_IR).main, onnx_node_outputs(ctx.get(FP32_ONNX).main, nodes))


def _versions(*names: str) -> Mapping[str, Any]:
    versions = toolchain_versions()
    return {n: versions.get(n) for n in names}


OV_IR: Step[Files] = Step(
    "ov.ir",
    "convert the FP32 ONNX to OpenVINO IR",
    lambda ctx, folder: Files(folder, tuple(ir_from_onnx(ctx.get(FP32_ONNX).main, folder / IR_XML))),
    needs=(FP32_ONNX,),
    identity=lambda _ctx: _versions("openvino"),
    reusable=True,
)


def _int8_ir(ctx: BuildContext, folder: Path) -> Files:
    """NNCF INT8 with the decision's float layers ignored, extended until OpenVINO's model passes."""
    crops, decision = ctx.get(CALIBRATION_CROPS), float_layers(ctx).float_layers
    detail(f"NNCF post-training INT8 on {len(crops)} photo crops")
    trials: dict[frozenset[str], Path] = {}
    ops = _ops_by_node(ctx)

    def evaluate(floats: frozenset[str]) -> float:
        xml = trials[floats - frozenset(decision)] = folder / f"trial-{len(trials)}.xml"
        int8_ir_from_ir(ctx.get(OV_IR).main, xml, crops, _recipe(ctx, sorted(floats), ops))
        info, threads = runner_info(ctx, ENGINE, "openvino"), ctx.settings.num_threads
        with OvRunner(xml, ctx.descriptor, info, hint=HINTS[ENGINE], num_threads=threads) as runner:
            return score_outputs(ctx, runner)

    result = engine_float_layers(ctx, ENGINE, evaluate, applies=lambda n: not is_output_unit(n))
    result.applied = list(_recipe(ctx, result.float_layers, ops).ignored)
    chosen = best_trial(trials, result.float_layers, decision)
    keep_trial([chosen, chosen.with_suffix(".bin")], folder, [INT8_XML, INT8_BIN])
    for xml in trials.values():
        xml.unlink(missing_ok=True)
        xml.with_suffix(".bin").unlink(missing_ok=True)
    return Files(folder, (INT8_XML, INT8_BIN, write_engine_float_layers(folder, result)))


OV_INT8_IR: Step[Files] = Step(
    "ov.int8-ir",
    "quantize the IR to INT8 with NNCF (float layers: the decision, extended if NNCF's model misses)",
    _int8_ir,
    needs=(OV_IR, CALIBRATION_CROPS, INT8_FLOAT_LAYERS, *SEARCH_NEEDS),
    identity=lambda ctx: {"calibration": _calibration(ctx), **_versions("openvino", "nncf")},
    reusable=True,
)


def _builder(name: str, ir: Step[Files]) -> Callable[[BuildContext, Path], list[str]]:
    def build(ctx: BuildContext, folder: Path) -> list[str]:
        made = ctx.get(ir)
        files = made.copy_to(folder)
        if name == ENGINE:
            engine = read_engine_float_layers(made.folder, ENGINE)
            note_float_layers(ctx, name, engine=engine, preset=_calibration(ctx).preset)
        ctx.begin(f"compile for the CPU ({HINTS[name]} hint) into the entry's model cache", name)
        shapes = tuple(tuple(t.shape) for t in export_inputs(ctx.descriptor, ctx.settings))
        return [*files, *compiled_blob(folder, files[0], HINTS[name], ctx.settings.num_threads, shapes)]

    return build


def _opener(name: str, xml: str) -> Callable[[OpenRequest], Runner]:
    def open_runner(req: OpenRequest) -> Runner:
        blobs = [f for f in req.files if f.endswith(".blob")]
        return OvRunner(
            req.folder / xml,
            req.descriptor,
            req.info,
            hint=HINTS[name],
            num_threads=req.num_threads,
            cache_dir=req.folder if blobs else None,
            cached_shapes=compiled_shapes(req.folder) if blobs else (),
        )

    return open_runner


CANDIDATES = (
    Candidate("openvino", (OV_IR,), _builder("openvino", OV_IR), _opener("openvino", IR_XML)),
    Candidate("openvino-bf16", (OV_IR,), _builder("openvino-bf16", OV_IR), _opener("openvino-bf16", IR_XML)),
    Candidate(
        "openvino-int8",
        (OV_INT8_IR,),
        _builder("openvino-int8", OV_INT8_IR),
        _opener("openvino-int8", INT8_XML),
    ),
)
