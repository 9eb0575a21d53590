"""The INT8 steps of the build graph: one calibration, one float-layer decision, every engine's model.

=======================  ==================================================  ===================
step                     value                                               consumed by
=======================  ==================================================  ===================
``int8.recipe``          calibration method (and nodes a caller keeps float) ranges, writers
``int8.ranges``          ORT activation ranges (``calibration.json``)        the static writers
``int8.qdq-all.onnx``    everything-INT8 symmetric Q/DQ model                the search, int8.qdq
``int8.float-layers``    the float-layer decision (``float_layers.json``)    every INT8 engine
``int8.qdq.onnx``        the Q/DQ model with the decision applied            int8-static,
                                                                             tensorrt-int8
``int8.qop.onnx``        QOperator model, decision (extended where its own   int8-static-qop
                         INT8 misses) as ``nodes_to_exclude``
``int8.dynamic.onnx``    dynamic INT8 model                                  int8-dynamic
=======================  ==================================================  ===================

The decision (``mixed_precision.search_float_layers`` over ``qdq_float.QdqModel``) is made once
per build on held-out photo crops and reused by later builds of the same weights; OpenVINO
(NNCF's ignored scope) and PyTorch FX (no qconfig for those modules) read it with
:func:`float_layers`. An engine whose own INT8 model misses the target with that set (another
quantizer, other kernels) extends it along the decision's ranking (:func:`engine_float_layers`,
``mixed_precision.extend_float_layers``) and records what it added with its files
(``float_layers.<engine>.json``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..cache.key import toolchain_versions
from ..progress import detail
from .calibration import ArrayCalibrationReader
from .graph import BuildContext, Files, Step
from .intermediates import (
    CALIBRATION_CROPS,
    CHECK_ITEMS,
    FP32_RECHECK_REFERENCE,
    FP32_REFERENCE,
    QUANT_READY_ONNX,
    RECHECK_ITEMS,
    files_in,
    ort_identity,
)
from .mixed_precision import (
    EngineFloatLayers,
    MixedPrecision,
    MixedPrecisionConfig,
    extend_float_layers,
    search_float_layers,
)
from .qdq_float import OUTPUT_PREFIX, QdqEvaluator, QdqModel, node_macs, ort_worst_psnr
from .quality import worst_psnr
from .quantize_onnx import (
    StaticInt8Settings,
    dynamic_int8_from_onnx,
    qdq_from_onnx,
    qoperator_from_onnx,
    ranges_from_calibration,
)

FLOAT_LAYERS_FILE = "float_layers.json"
SEARCH_ITEMS = 8
"""Held-out crops each search trial runs: the check's four and the re-check's four (two per
photo); the worst one counts. Measured (TransformerNet, 256x256, `int8-static`): a choice made on
the check's four alone held 34.7 dB on photos from other packages; on all eight, 36.6 dB, with
fewer layers in float (4 instead of 17 before the crops kept native detail)."""
ENGINE_TRIALS = 8
"""Trials an engine may spend extending the decision (each is one INT8 model of that engine:
an NNCF run or an FX calibration takes seconds); a QOperator model is written and opened in
well under a second, so it gets ``QOP_TRIALS``."""
QOP_TRIALS = 16


def default_settings(device: str) -> StaticInt8Settings:
    """The same for every architecture: MinMax ranges, per-channel symmetric weights, 7-bit weights
    for ONNX Runtime on an x86 CPU without VNNI (see ``StaticInt8Settings.reduce_range``)."""
    from .hardware import probe_hardware

    return StaticInt8Settings(reduce_range=device == "cpu" and not probe_hardware().vnni)


INT8_RECIPE: Step[StaticInt8Settings] = Step(
    "int8.recipe",
    "static INT8 settings (ModelQuantizer may provide its own)",
    lambda ctx, _folder: default_settings(ctx.settings.device),
    identity=lambda ctx: {"recipe": default_settings(ctx.settings.device)},
    quiet=True,
)


def _ranges(ctx: BuildContext, folder: Path) -> Files:
    recipe, crops = ctx.get(INT8_RECIPE), ctx.get(CALIBRATION_CROPS)
    detail(f"{recipe.method} ranges on {len(crops)} photo crops")
    reader = ArrayCalibrationReader(ctx.descriptor, crops)
    ranges_from_calibration(ctx.get(QUANT_READY_ONNX).main, reader, recipe, folder / "calibration.json")
    return files_in(folder, ["calibration.json"])


INT8_RANGES: Step[Files] = Step(
    "int8.ranges",
    "calibrate activation ranges",
    _ranges,
    needs=(QUANT_READY_ONNX, INT8_RECIPE, CALIBRATION_CROPS),
    identity=ort_identity,
    reusable=True,
)


def _qdq_all(ctx: BuildContext, folder: Path) -> Files:
    ready, ranges, recipe = ctx.get(QUANT_READY_ONNX).main, ctx.get(INT8_RANGES).main, ctx.get(INT8_RECIPE)
    qdq_from_onnx(ready, folder / "model.int8-qdq-all.onnx", ranges, recipe)
    return files_in(folder, ["model.int8-qdq-all.onnx"])


INT8_QDQ_ALL: Step[Files] = Step(
    "int8.qdq-all.onnx",
    "write the everything-INT8 symmetric Q/DQ ONNX from the ranges",
    _qdq_all,
    needs=(QUANT_READY_ONNX, INT8_RANGES, INT8_RECIPE),
    identity=ort_identity,
    reusable=True,
)


QDQ_MODEL: Step[QdqModel] = Step(
    "int8.qdq-model",
    "load the FP32 and everything-INT8 graphs for float-layer edits",
    lambda ctx, _folder: QdqModel(ctx.get(QUANT_READY_ONNX).main, ctx.get(INT8_QDQ_ALL).main),
    needs=(QUANT_READY_ONNX, INT8_QDQ_ALL),
    identity=lambda _ctx: {},  # addressed by its needs, so the search after it stays reusable
    quiet=True,
)
"""Loaded once per build: the search, the Q/DQ writer and the QOperator writer all edit it."""


SEARCH_NEEDS = (CHECK_ITEMS, FP32_REFERENCE, RECHECK_ITEMS, FP32_RECHECK_REFERENCE)
"""The steps :func:`search_items` reads (a consumer of it lists them in its needs)."""


def search_items(ctx: BuildContext) -> tuple[list[list[Any]], list[Any]]:
    """The held-out crops a float set is scored on (search and engine extensions) and their FP32 outputs."""
    items = ctx.get(CHECK_ITEMS) + ctx.get(RECHECK_ITEMS)
    reference = ctx.get(FP32_REFERENCE) + ctx.get(FP32_RECHECK_REFERENCE)
    return items[:SEARCH_ITEMS], reference[:SEARCH_ITEMS]


def search_config(ctx: BuildContext) -> MixedPrecisionConfig:
    return MixedPrecisionConfig(max_trials=max(4, ctx.settings.int8_max_trials))


def _search(ctx: BuildContext, folder: Path) -> Files:
    """Find the float layers on held-out crops (ONNX Runtime, simulated Q/DQ); write the decision."""
    ready = ctx.get(QUANT_READY_ONNX).main
    model = ctx.get(QDQ_MODEL)
    items, reference = search_items(ctx)
    names = [s.name for s in ctx.descriptor.inputs]
    units = model.units(node_macs(ready, dict(zip(names, items[0]))))
    evaluate = QdqEvaluator(
        model,
        names,
        items,
        reference,
        ctx.descriptor.output.value_range,
        ctx.settings.num_threads,
    )
    target = ctx.settings.gate("int8") + search_config(ctx).margin_db
    detail(f"{len(units)} quantized layers; aiming at {target:.1f} dB")

    def traced(floats: frozenset[str]) -> float:
        psnr = evaluate(floats)
        detail(f"{len(floats)} layer(s) in float: {psnr:.1f} dB")
        return psnr

    if ctx.settings.int8_max_trials <= 0:  # search off: everything INT8, as the user asked
        target = float("-inf")
    start = model.coordinate_units() if ctx.settings.int8_max_trials > 0 else []
    if start:
        detail(f"{len(start)} layer(s) computing sampling coordinates start in float")
    result = search_float_layers(units, traced, target, search_config(ctx), start=start)
    detail(result.summary())
    (folder / FLOAT_LAYERS_FILE).write_text(json.dumps(result.to_dict(), indent=1))
    return files_in(folder, [FLOAT_LAYERS_FILE])


def _search_identity(ctx: BuildContext) -> Mapping[str, Any]:
    return {
        "config": search_config(ctx).to_dict(),
        "gate": ctx.settings.gate("int8"),
        "trials": ctx.settings.int8_max_trials,
        "check": [list(ctx.settings.opt_size), "held-out", SEARCH_ITEMS],
        "onnxruntime": toolchain_versions().get("onnxruntime"),
    }


INT8_FLOAT_LAYERS: Step[Files] = Step(
    "int8.float-layers",
    "find the layers INT8 must keep in float (sensitivity search)",
    _search,
    needs=(QUANT_READY_ONNX, QDQ_MODEL, *SEARCH_NEEDS),
    identity=_search_identity,
    reusable=True,
)


def float_layers(ctx: BuildContext) -> MixedPrecision:
    """The build's float-layer decision (made once; every INT8 engine reads it)."""
    return read_float_layers(ctx.get(INT8_FLOAT_LAYERS).main)


def float_nodes(layers: MixedPrecision | Sequence[str]) -> list[str]:
    """The float layers that are graph nodes (an engine whose outputs are float anyway has nothing
    to do for an ``output:NAME`` unit)."""
    names = layers.float_layers if isinstance(layers, MixedPrecision) else layers
    return [n for n in names if not is_output_unit(n)]


def is_output_unit(name: str) -> bool:
    return name.startswith(OUTPUT_PREFIX)


def engine_float_layers(
    ctx: BuildContext,
    engine: str,
    evaluate: Callable[[frozenset[str]], float],
    applies: Callable[[str], bool] | None = None,
    max_trials: int = ENGINE_TRIALS,
) -> EngineFloatLayers:
    """The decision's float set, extended along its ranking until ``engine``'s own INT8 model
    (``evaluate``: worst held-out crop's PSNR for a float set) reaches the decision's target."""

    def traced(floats: frozenset[str]) -> float:
        psnr = evaluate(floats)
        detail(f"{engine}: {len(floats)} layer(s) in float: {psnr:.1f} dB")
        return psnr

    result = extend_float_layers(engine, float_layers(ctx), traced, max_trials, applies)
    detail(result.summary())
    return result


def score_outputs(ctx: BuildContext, run: Callable[..., Any]) -> float:
    """The worst search item's PSNR for ``run`` (one call per item's inputs)."""
    items, reference = search_items(ctx)
    return worst_psnr(reference, [run(*item) for item in items], ctx.descriptor.output.value_range)


def engine_file(engine: str) -> str:
    return f"float_layers.{engine}.json"


def write_engine_float_layers(folder: Path, result: EngineFloatLayers) -> str:
    """Record an engine's float set with its files; returns the file name."""
    name = engine_file(result.engine)
    (folder / name).write_text(json.dumps(result.to_dict(), indent=1))
    return name


def read_engine_float_layers(folder: Path, engine: str) -> EngineFloatLayers | None:
    path = folder / engine_file(engine)
    return EngineFloatLayers.from_dict(json.loads(path.read_text())) if path.exists() else None


def best_trial(trials: dict[frozenset[str], Path], chosen: Sequence[str], decision: Sequence[str]) -> Path:
    """The trial file an extension ended on (trials are keyed by the units added to the decision)."""
    return trials[frozenset(chosen) - frozenset(decision)]


def keep_trial(files: Sequence[Path], folder: Path, names: Sequence[str]) -> None:
    """Move the chosen trial's files to their final names in ``folder``."""
    for src, name in zip(files, names):
        shutil.move(str(src), str(folder / name))


def read_float_layers(path: Path) -> MixedPrecision:
    return MixedPrecision.from_dict(json.loads(path.read_text()))


def note_float_layers(
    ctx: BuildContext,
    candidate: str,
    applied: list[str] | None = None,
    engine: EngineFloatLayers | None = None,
    **extra: Any,
) -> None:
    """Record on ``candidate``'s result which layers it keeps in float and what the search found.

    ``applied``: the engine's own names for the float layers, where they differ from the ONNX
    node names of the decision (NNCF patterns, FX module names). ``engine``: the decision as this
    engine extended it (its float layers replace the decision's in the record).
    """
    mp = float_layers(ctx)
    if engine is not None:
        extra["engine_extension"] = engine.to_dict()
        if applied is None and engine.applied:
            applied = engine.applied
    ctx.note(
        candidate,
        float_layers=engine.float_layers if engine is not None else mp.float_layers,
        int8_mac_share=engine.int8_mac_share if engine is not None else mp.int8_mac_share,
        psnr_all_int8_db=mp.psnr_all_int8_db,
        search_psnr_db=mp.psnr_db,
        search_trials=mp.trials,
        search_seconds=mp.seconds,
        quantized_layers=mp.units,
        **({"applied": applied} if applied is not None else {}),
        **extra,
    )


def _qdq(ctx: BuildContext, folder: Path) -> Files:
    floats = float_layers(ctx).float_layers
    ctx.get(QDQ_MODEL).write(floats, folder / "model.int8-qdq.onnx")
    return files_in(folder, ["model.int8-qdq.onnx"])


INT8_QDQ_ONNX: Step[Files] = Step(
    "int8.qdq.onnx",
    "write the Q/DQ INT8 ONNX with the float layers",
    _qdq,
    needs=(QDQ_MODEL, INT8_FLOAT_LAYERS),
)


QOP_FILE = "model.int8-qop.onnx"


def _qop(ctx: BuildContext, folder: Path) -> Files:
    """The QOperator model with the decision's float layers excluded, extended until it passes."""
    trials: dict[frozenset[str], Path] = {}
    decision = float_layers(ctx).float_layers
    names = [s.name for s in ctx.descriptor.inputs]

    def evaluate(floats: frozenset[str]) -> float:
        path = trials[floats - frozenset(decision)] = folder / f"trial-{len(trials)}.onnx"
        _write_qop(ctx, floats, path)
        items, reference = search_items(ctx)
        value_range = ctx.descriptor.output.value_range
        return ort_worst_psnr(path, names, items, reference, value_range, ctx.settings.num_threads)

    result = engine_float_layers(ctx, "int8-static-qop", evaluate, max_trials=QOP_TRIALS)
    keep_trial([best_trial(trials, result.float_layers, decision)], folder, [QOP_FILE])
    for path in trials.values():
        path.unlink(missing_ok=True)
    return files_in(folder, [QOP_FILE, write_engine_float_layers(folder, result)])


def _write_qop(ctx: BuildContext, floats: frozenset[str], target: Path) -> None:
    recipe = ctx.get(INT8_RECIPE)
    excluded = tuple(_literal(n) for n in ctx.get(QDQ_MODEL).node_names(sorted(floats)))
    recipe = replace(recipe, exclude_nodes=recipe.exclude_nodes + excluded)
    qoperator_from_onnx(ctx.get(QUANT_READY_ONNX).main, target, ctx.get(INT8_RANGES).main, recipe)


def _literal(name: str) -> str:
    """An fnmatch pattern matching exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


INT8_QOP_ONNX: Step[Files] = Step(
    "int8.qop.onnx",
    "write the QOperator INT8 ONNX, float layers excluded",
    _qop,
    needs=(
        QUANT_READY_ONNX,
        INT8_RANGES,
        INT8_RECIPE,
        QDQ_MODEL,
        INT8_FLOAT_LAYERS,
        *SEARCH_NEEDS,
    ),
)


def _dynamic(ctx: BuildContext, folder: Path) -> Files:
    dynamic_int8_from_onnx(ctx.get(QUANT_READY_ONNX).main, folder / "model.int8-dynamic.onnx")
    return files_in(folder, ["model.int8-dynamic.onnx"])


INT8_DYNAMIC_ONNX: Step[Files] = Step(
    "int8.dynamic.onnx",
    "quantize weights to INT8 (dynamic)",
    _dynamic,
    needs=(QUANT_READY_ONNX,),
    identity=ort_identity,
)
