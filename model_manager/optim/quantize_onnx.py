"""INT8 ONNX models from the verified FP32 ONNX: dynamic, and static from one calibration.

Builders named "what from what": ``dynamic_int8_from_onnx``, ``ranges_from_calibration``,
``qdq_from_onnx`` (symmetric int8 activations and per-channel symmetric weights: what TensorRT
consumes, and ONNX Runtime runs it on the CPU), ``qoperator_from_onnx`` (QLinearConv and friends,
uint8 activations: often faster on x86). Calibration runs once; both static formats are written
from the same saved ranges. Ranges come from ``create_calibrator`` directly, so the method's own
settings (histogram bins, percentile) are honoured.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import EngineBuildError, InvalidInputError
from .calibration import ArrayCalibrationReader

log = logging.getLogger(__name__)

CalibrationName = Literal["minmax", "entropy", "percentile"]
QUANTIZED_OP_TYPES = (
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "Add",
    "Mul",
    "Concat",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "DepthToSpace",
    "Resize",
    "MaxPool",
    "AveragePool",
    "Sigmoid",
)


@dataclass(frozen=True)
class StaticInt8Settings:
    """Calibration and quantization choices; ``exclude_*`` keep nodes in float where quality needs it."""

    method: CalibrationName = "minmax"
    percentile: float = 99.999
    num_bins: int = 2048
    per_channel: bool = True
    reduce_range: bool = False
    """7-bit weights. ONNX Runtime's integer kernels on x86 CPUs without VNNI (AVX2, AVX-512F)
    multiply u8 x s8 pairs into saturating 16-bit sums; a plain 4-conv net measured 57 dB with
    Q/DQ simulated and 28 dB served on such a CPU, 55 dB with 7-bit weights. The build sets it
    for CPU builds where ``Hardware.vnni`` is false."""
    exclude_nodes: tuple[str, ...] = ()
    """fnmatch patterns on node names, e.g. ``/conv4/*``."""
    exclude_op_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in ("minmax", "entropy", "percentile"):
            raise InvalidInputError(
                f"calibration method must be minmax, entropy or percentile, got {self.method!r}"
            )
        if not 90.0 <= self.percentile <= 100.0:
            raise InvalidInputError(f"percentile must be in 90..100, got {self.percentile}")


class _DropOnnxRuntimeRootRecords(logging.Filter):
    """onnxruntime.quantization logs through the root logger; its per-tensor chatter is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname.replace("\\", "/") or record.levelno >= logging.ERROR


@contextmanager
def quiet_onnxruntime_quantization() -> Iterator[None]:
    """Silence onnxruntime.quantization's warnings and progress prints for the duration."""
    root = logging.getLogger()
    flt = _DropOnnxRuntimeRootRecords()
    root.addFilter(flt)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(flt)


def preprocess_for_quantization(source: Path, target: Path) -> Path:
    """ONNX Runtime's ``quant_pre_process`` (graph optimization and shape inference) before quantizing."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet_onnxruntime_quantization():
        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return target


def dynamic_int8_from_onnx(source: Path, target: Path) -> Path:
    """Dynamic INT8 (weights int8 per channel, activations quantized at run time; Conv -> ConvInteger)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnxruntime_quantization():
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        )
    return target


def ranges_from_calibration(
    source: Path, reader: ArrayCalibrationReader, settings: StaticInt8Settings, target: Path
) -> Path:
    """Collect activation ranges on the calibration data and save them as JSON (TensorsData)."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    method, extra = _calibrator_options(settings)
    with tempfile.TemporaryDirectory(prefix="model_manager-calib-") as tmp, quiet_onnxruntime_quantization():
        calibrator = create_calibrator(
            source,
            list(QUANTIZED_OP_TYPES),
            augmented_model_path=str(Path(tmp) / "aug.onnx"),
            calibrate_method=method,
            extra_options=extra,
        )
        # Feed in chunks: each collect_data call merges its ranges and frees the activations it
        # held (MinMax otherwise keeps every intermediate tensor of every sample in memory).
        while reader.has_more():
            calibrator.collect_data(_Chunk(reader, _CALIBRATION_CHUNK))
        ranges = calibrator.compute_data()
        del calibrator
    save_tensors_data(ranges, target)
    return target


_CALIBRATION_CHUNK = 2
"""Samples per collect_data call (RRDBNet at 128x128 holds ~1.4 GB of activations per sample)."""


class _Chunk:
    """At most ``n`` feeds from a reader, then None (one collect_data call's worth)."""

    def __init__(self, reader: ArrayCalibrationReader, n: int) -> None:
        self.reader, self.left = reader, n

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.left == 0:
            return None
        self.left -= 1
        return self.reader.get_next()


def _calibrator_options(settings: StaticInt8Settings) -> tuple[object, dict[str, object]]:
    from onnxruntime.quantization import CalibrationMethod

    if settings.method == "entropy":
        return CalibrationMethod.Entropy, {"num_bins": settings.num_bins, "num_quantized_bins": 128}
    if settings.method == "percentile":
        return CalibrationMethod.Percentile, {
            "num_bins": settings.num_bins,
            "percentile": settings.percentile,
            "symmetric": True,
        }
    # Not "max_intermediate_outputs": in onnxruntime 1.32 it drops the collected tensors without
    # computing their ranges ("No data is collected"); ranges_from_calibration feeds chunks instead.
    return CalibrationMethod.MinMax, {}


def qdq_from_onnx(source: Path, target: Path, ranges: Path, settings: StaticInt8Settings) -> Path:
    """Q/DQ model: int8 symmetric activations, per-channel symmetric int8 weights (TensorRT-ready)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    return _quantize_static(
        source,
        target,
        ranges,
        settings,
        QuantFormat.QDQ,
        QuantType.QInt8,
        {"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def qoperator_from_onnx(source: Path, target: Path, ranges: Path, settings: StaticInt8Settings) -> Path:
    """QOperator model (QLinearConv, ...): uint8 activations, int8 per-channel weights."""
    from onnxruntime.quantization import QuantFormat, QuantType

    return _quantize_static(
        source, target, ranges, settings, QuantFormat.QOperator, QuantType.QUInt8, {"WeightSymmetric": True}
    )


def _quantize_static(
    source: Path,
    target: Path,
    ranges: Path,
    settings: StaticInt8Settings,
    fmt: object,
    activation: object,
    extra: dict[str, object],
) -> Path:
    from onnxruntime.quantization import QuantType, quantize_static

    method, _ = _calibrator_options(settings)
    try:
        with quiet_onnxruntime_quantization():
            quantize_static(
                str(source),
                str(target),
                None,
                quant_format=fmt,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=activation,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                calibration_cache_path=str(ranges),
                nodes_to_exclude=excluded_nodes(source, settings),
                op_types_to_quantize=list(QUANTIZED_OP_TYPES),
                extra_options=extra,
            )
    except (ValueError, RuntimeError) as exc:
        raise EngineBuildError(f"ONNX Runtime static quantization of {source.name} failed: {exc}") from exc
    return target


def excluded_nodes(model_path: Path, settings: StaticInt8Settings) -> list[str]:
    """Names of the nodes matching the settings' patterns or op types (kept in float)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type in settings.exclude_op_types
        or any(fnmatch.fnmatchcase(n.name, p) for p in settings.exclude_nodes)
    ]


def is_symmetric_per_channel_qdq(path: Path) -> bool:
    """True when every DequantizeLinear has zero-points of 0 and conv weights are per-channel."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    if not dq:
        return False
    zero_points_ok = all(len(n.input) < 3 or not np.any(inits.get(n.input[2], 0)) for n in dq)
    weights = [n for n in dq if n.input[0] in inits and inits[n.input[0]].ndim == 4]
    per_channel = all(inits[n.input[1]].size == inits[n.input[0]].shape[_axis(n)] for n in weights)
    return zero_points_ok and bool(weights) and per_channel


def _axis(node: object) -> int:
    for a in getattr(node, "attribute", []):
        if a.name == "axis":
            return int(a.i)
    return 1


def op_histogram(
    path: Path,
    ops: Sequence[str] = ("QLinearConv", "ConvInteger", "QuantizeLinear", "DequantizeLinear", "Conv"),
) -> dict[str, int]:
    """How many nodes of each of ``ops`` the model has (what really got quantized)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {op: sum(1 for n in graph.node if n.op_type == op) for op in ops}
