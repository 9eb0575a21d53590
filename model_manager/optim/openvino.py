"""OpenVINO candidates: IR from our verified ONNX export, INT8 IR by NNCF, compiled-model blobs.

Builders are named "what from what": ``ir_from_onnx`` converts the verified FP32 ONNX export to
an IR (``.xml`` + ``.bin``, FP32 weights); ``int8_ir_from_ir`` runs NNCF post-training
quantization on the same real-photo calibration crops the ONNX Runtime path uses, keeping the
layers an architecture's recipe names in float. Each candidate also compiles its IR once with
``CACHE_DIR`` set to the build folder: the compiled blob becomes one of the entry's checksummed
files, so a restarted process loads it instead of recompiling.

Three candidates: ``openvino`` (FP32, ``INFERENCE_PRECISION_HINT=f32`` asked for explicitly),
``openvino-bf16`` (the same IR under the BF16 hint, where the CPU has native BF16) and
``openvino-int8``. They exist only when the ``openvino`` extra is installed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..descriptor import ModelDescriptor
from ..runners import OvRunner, Runner
from ..runners.ov_session import PrecisionHint, compile_model, import_openvino, ov_errors
from .calibration import sample_calibration_set
from .progress import step

IR_XML, IR_BIN = "model.ov.xml", "model.ov.bin"
INT8_XML, INT8_BIN = "model.ov-int8.xml", "model.ov-int8.bin"
HINTS: dict[str, PrecisionHint] = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}


@dataclass(frozen=True)
class OvInt8Recipe:
    """NNCF settings for one architecture; ``ignored`` are regexes on node names kept in float."""

    ignored: tuple[str, ...] = ()
    preset: str = "performance"
    """``performance`` (symmetric activations) or ``mixed`` (asymmetric: signed data around an offset)."""
    fast_bias_correction: bool = True
    activation_ranges: str = "minmax"
    """How activation ranges are estimated: ``minmax``, ``mean_quantile`` or ``histogram`` (clip outliers)."""


# From scripts/explore_ov_int8.py on the trained defaults (PSNR vs FP32 at the build's shape; gate 35 dB):
# ESPCN 32.8 dB fully quantized, 46.1 dB with conv1 (the 5x5 input conv, 7% of the MACs) in float;
# TransformerNet 32.9 (performance), 35.1 (mixed), 35.3 (mixed + mean-quantile ranges), 35.6 with the
# two full-resolution 9x9 end convs (10% of the MACs) in float too; IFNet 42.5 dB as it is.
OV_INT8_RECIPES: dict[str, OvInt8Recipe] = {
    "ESPCN": OvInt8Recipe(ignored=(r"/conv1/.*",)),
    "TransformerNet": OvInt8Recipe(
        preset="mixed", activation_ranges="mean_quantile", ignored=(r"/conv1/.*", r"/deconv3/.*")
    ),
}


def ir_from_onnx(onnx_path: Path, xml: Path) -> list[str]:
    """Convert an ONNX model to an FP32 IR (dynamic dims kept); returns the two file names."""
    ov = import_openvino()
    with ov_errors(f"convert {onnx_path.name}"):
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml.name, xml.with_suffix(".bin").name]


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
    """NNCF draws progress bars on stdout and logs every node at INFO: keep stdout for data (--json)."""
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(max(level, logging.WARNING))
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        nncf_log.setLevel(level)


def compiled_blob(folder: Path, xml: str, hint: PrecisionHint, num_threads: int | None) -> list[str]:
    """Compile ``xml`` once with ``CACHE_DIR=folder`` and return the blob file(s) it wrote."""
    before = set(folder.glob("*.blob"))
    compile_model(folder / xml, hint, num_threads, folder)
    return sorted(p.name for p in set(folder.glob("*.blob")) - before)


def _onnx_export(module: nn.Module, descriptor: ModelDescriptor, tmp: Path, settings: Any) -> Path:
    from .candidates import ONNX_FILE, onnx_from_torch

    onnx_from_torch(module, descriptor, tmp, settings)
    return tmp / ONNX_FILE


def _fp32_ir(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
    """The FP32 IR in ``folder`` (shared by the FP32 and BF16-hint candidates; built once)."""
    if (folder / IR_XML).is_file() and (folder / IR_BIN).is_file():
        return [IR_XML, IR_BIN]
    with tempfile.TemporaryDirectory(prefix="model_manager-ov-") as tmp:
        onnx_path = _onnx_export(module, descriptor, Path(tmp), settings)
        step("convert ONNX to OpenVINO IR")
        return ir_from_onnx(onnx_path, folder / IR_XML)


def _float_builder(name: str) -> Callable[..., list[str]]:
    def build(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
        files = _fp32_ir(module, descriptor, folder, settings)
        step(f"compile for the CPU ({HINTS[name]} hint) into the entry's model cache")
        return [*files, *compiled_blob(folder, IR_XML, HINTS[name], settings.num_threads)]

    return build


def _int8_build(module: nn.Module, descriptor: ModelDescriptor, folder: Path, settings: Any) -> list[str]:
    from .int8_candidates import CALIBRATION_SAMPLES, calibration_size

    with tempfile.TemporaryDirectory(prefix="model_manager-ov-") as tmp:
        onnx_path = _onnx_export(module, descriptor, Path(tmp), settings)
        step("convert ONNX to OpenVINO IR")
        ir_from_onnx(onnx_path, Path(tmp) / IR_XML)
        data = sample_calibration_set(descriptor, calibration_size(descriptor, settings), CALIBRATION_SAMPLES)
        step(f"NNCF post-training INT8 on {CALIBRATION_SAMPLES} photo crops")
        recipe = OV_INT8_RECIPES.get(descriptor.architecture, OvInt8Recipe())
        files = int8_ir_from_ir(Path(tmp) / IR_XML, folder / INT8_XML, data, recipe)
    step("compile for the CPU into the entry's model cache")
    return [*files, *compiled_blob(folder, INT8_XML, HINTS["openvino-int8"], settings.num_threads)]


def _opener(name: str) -> Callable[[Any], Runner]:
    xml = INT8_XML if name == "openvino-int8" else IR_XML

    def open_runner(req: Any) -> Runner:
        blobs = [f for f in req.files if f.endswith(".blob")]
        return OvRunner(
            req.folder / xml,
            req.descriptor,
            req.info,
            hint=HINTS[name],
            num_threads=req.num_threads,
            cache_dir=req.folder if blobs else None,
        )

    return open_runner


def register(add: Callable[[Any], Any]) -> None:
    """Add the OpenVINO candidates through the registry's ``register_candidate``."""
    from .candidates import Candidate

    add(Candidate("openvino", "openvino", "fp32", ("cpu",), _float_builder("openvino"), _opener("openvino")))
    add(
        Candidate(
            "openvino-bf16",
            "openvino",
            "bf16",
            ("cpu",),
            _float_builder("openvino-bf16"),
            _opener("openvino-bf16"),
        )
    )
    add(Candidate("openvino-int8", "openvino", "int8", ("cpu",), _int8_build, _opener("openvino-int8")))
