"""ModelQuantizer: one dispatcher over every quantization this project does, each checked against FP32.

A thin face over the build graph: the ONNX Runtime results come from the same steps an ``auto``
build runs (``intermediates.py``: the verified FP32 export, ``quant_pre_process``, one
calibration, the Q/DQ / QOperator / dynamic writers), with the caller's calibration data or
settings injected as those steps' values; the quality check is the same ``compare`` against eager
FP32, and the gates are :class:`~model_manager.config.QualityGates`.

Shaped like ONNX Runtime's quantization tools (a config object, a calibration data reader, one
entry point), with typed fields instead of option dictionaries. Kinds and where they run:

============  ===================================  =========================================
type          backend "onnxruntime" (default)      backend "torch"
============  ===================================  =========================================
DYNAMIC       ConvInteger / MatMulInteger ONNX    ``quantize_dynamic`` (Linear / LSTM / GRU
                                                   only: says so when it changes nothing)
STATIC        calibrate once -> Q/DQ (symmetric,   FX graph mode PTQ (x86 / qnnpack engine)
              TensorRT-ready) and QOperator ONNX
QAT           --                                   prepare_qat / convert_qat helpers
FP16          FP16 weights, CUDA                   ``.half()`` + channels_last (CUDA)
BF16          --                                   autocast + channels_last on CPUs with native BF16
============  ===================================  =========================================

Every result carries its quality against FP32 on real sample photos; one below its gate
(INT8 35 dB, FP16 / BF16 40 dB by default) is reported and refuses to serve.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..config import QualityGates
from ..descriptor import ModelDescriptor, descriptor_from_dict
from ..errors import InvalidInputError, QualityGateError, StrategyUnavailableError
from ..progress import publish
from ..runners import OrtRunner, Runner, RunnerInfo, TorchRunner
from ..samples import sample_batch
from .benchmark import benchmark_interleaved
from .calibration import check_calibration_data, sample_calibration_set
from .graph import BuildContext, Files, Step
from .int8_steps import (
    INT8_DYNAMIC_ONNX,
    INT8_QDQ_ONNX,
    INT8_QOP_ONNX,
    INT8_RANGES,
    INT8_RECIPE,
    default_settings,
)
from .intermediates import CALIBRATION_CROPS
from .quality import QualityReport, compare
from .quantize_onnx import StaticInt8Settings
from .settings import DEFAULT_OPSET, BuildSettings

SAVE_FORMAT = 1
ONNX_RESULTS: dict[str, tuple[Step[Files], str]] = {
    "qdq": (INT8_QDQ_ONNX, "model.int8-qdq.onnx"),
    "qoperator": (INT8_QOP_ONNX, "model.int8-qoperator.onnx"),
    "dynamic": (INT8_DYNAMIC_ONNX, "model.int8-dynamic.onnx"),
}
"""Each ONNX Runtime result: the build-graph step that makes it and its file name in the work folder."""


class QuantizationType(str, Enum):
    """What kind of reduced precision to produce."""

    DYNAMIC = "dynamic"
    STATIC = "static"
    QAT = "qat"
    FP16 = "fp16"
    BF16 = "bf16"


@dataclass(frozen=True)
class QuantizationConfig:
    """Typed settings of one quantization (no free-form option dictionaries)."""

    quantization_type: QuantizationType = QuantizationType.DYNAMIC
    backend: Literal["onnxruntime", "torch"] = "onnxruntime"
    static: StaticInt8Settings | None = None
    """Calibration method and nodes always kept in float; None: ``int8_steps.default_settings`` (the
    float-layer search then decides what stays in float)."""
    formats: tuple[Literal["qdq", "qoperator"], ...] = ("qdq", "qoperator")
    calibration_samples: int = 8
    input_size: tuple[int, int] = (128, 128)
    """Calibration and quality-check size (rounded up to the model's size multiple)."""
    opset: int = DEFAULT_OPSET
    min_psnr_db: float | None = None
    """Quality gate; None: the precision's gate in ``gates``."""
    gates: QualityGates = field(default_factory=QualityGates)
    work_dir: Path | None = None
    """Where ONNX results are written; None: a temporary folder owned by the result."""
    mixed_precision_trials: int = 48
    """Trials of the float-layer search for static ONNX INT8 (``optim/mixed_precision.py``); 0: every
    quantizable layer in INT8."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantization_type", QuantizationType(self.quantization_type))
        if self.backend not in ("onnxruntime", "torch"):
            raise InvalidInputError(f"backend must be 'onnxruntime' or 'torch', got {self.backend!r}")
        if not self.formats or any(f not in ("qdq", "qoperator") for f in self.formats):
            raise InvalidInputError(
                f"formats must be a non-empty subset of ('qdq', 'qoperator'), got {self.formats}"
            )
        if self.calibration_samples < 1:
            raise InvalidInputError(f"calibration_samples must be >= 1, got {self.calibration_samples}")


@dataclass
class QuantizedModel:
    """A quantization result: ONNX files and/or a module, its quality, and whether it may serve."""

    quantization_type: QuantizationType
    backend: str
    precision: str
    descriptor: ModelDescriptor
    files: dict[str, Path] = field(default_factory=dict)
    module: nn.Module | None = None
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    min_psnr_db: float = QualityGates.int8_min_psnr
    notes: list[str] = field(default_factory=list)
    _tmp: Any = None  # keeps a temporary work folder alive as long as the result

    @property
    def passed(self) -> bool:
        return bool(self.quality) and all(q["psnr_db"] >= self.min_psnr_db for q in self.quality.values())

    def runner(
        self, fmt: str | None = None, *, num_threads: int | None = None, force: bool = False
    ) -> Runner:
        """A Runner over the result (``fmt``: "qdq" / "qoperator" / "dynamic"); refuses below the gate."""
        key = fmt or next(iter(self.quality), "")
        q = self.quality.get(key)
        if not force and (q is None or q["psnr_db"] < self.min_psnr_db):
            raise QualityGateError(
                f"{self.quantization_type.value} {key}: {q['psnr_db'] if q else 'no'} dB against FP32, "
                f"gate {self.min_psnr_db} dB; not served (force=True to run it anyway)"
            )
        info = RunnerInfo(
            self.descriptor.model_type,
            self.descriptor.architecture,
            self.quantization_type.value,
            self.backend,
            "cpu",
            self.precision,
            quality=dict(q or {}),
        )
        if key in self.files:
            return OrtRunner(self.files[key], self.descriptor, info, num_threads=num_threads)
        assert self.module is not None
        return _torch_runner(self, info)


def _torch_runner(q: QuantizedModel, info: RunnerInfo) -> Runner:
    assert q.module is not None
    if q.precision == "bf16":
        return TorchRunner(q.module, q.descriptor, info, autocast=torch.bfloat16, channels_last=True)
    if q.precision == "fp16":
        return TorchRunner(
            q.module, q.descriptor, info, device="cuda", dtype=torch.float16, channels_last=True
        )
    return TorchRunner(q.module, q.descriptor, info)


class ModelQuantizer:
    """The one entry point: ``quantize`` dispatches on the config's type and backend."""

    def __init__(self, config: QuantizationConfig | None = None) -> None:
        self.config = config or QuantizationConfig()

    def quantize(
        self,
        model: nn.Module,
        calibration_data: Sequence[Sequence[np.ndarray]] | None = None,
        device: str = "cpu",
        *,
        descriptor: ModelDescriptor | None = None,
    ) -> QuantizedModel:
        """Quantize ``model`` (architecture detected from its weights unless ``descriptor`` is given)."""
        from ..checkpoint import describe_module

        desc = descriptor or describe_module(model, None)
        model = model.eval()
        kind, backend = self.config.quantization_type, self.config.backend
        if calibration_data is not None:
            check_calibration_data(desc, calibration_data)
        handlers = {
            (QuantizationType.DYNAMIC, "onnxruntime"): self._dynamic_onnx,
            (QuantizationType.STATIC, "onnxruntime"): self._static_onnx,
            (QuantizationType.DYNAMIC, "torch"): self._dynamic_torch,
            (QuantizationType.STATIC, "torch"): self._static_torch,
            (QuantizationType.QAT, "torch"): self._qat_convert,
            (QuantizationType.BF16, "torch"): self._bf16,
            (QuantizationType.FP16, "torch"): self._fp16,
            (QuantizationType.FP16, "onnxruntime"): self._fp16,
        }
        handler = handlers.get((kind, backend))
        if handler is None:
            raise StrategyUnavailableError(
                f"{kind.value} quantization has no {backend} implementation; "
                f"supported: {sorted(f'{k.value}/{b}' for k, b in handlers)}"
            )
        if device not in ("cpu", "cuda"):
            raise InvalidInputError(f"device must be 'cpu' or 'cuda', got {device!r}")
        return handler(model, desc, calibration_data, device)

    # -- ONNX Runtime ---------------------------------------------------------------------
    def _work(self) -> tuple[Path, Any]:
        if self.config.work_dir is not None:
            self.config.work_dir.mkdir(parents=True, exist_ok=True)
            return self.config.work_dir, None
        tmp = tempfile.TemporaryDirectory(prefix="model_manager-quant-")
        return Path(tmp.name), tmp

    def _graph(self, model: nn.Module, desc: ModelDescriptor, folder: Path, data: Any) -> BuildContext:
        """A build context over the shared steps, with this config's recipe and calibration set."""
        size = self._size(desc)
        gates = {**self.config.gates.by_precision(), "int8": self._gate("int8")}
        settings = BuildSettings(
            opset=self.config.opset,
            opt_size=size,
            gates=gates,
            int8_max_trials=self.config.mixed_precision_trials,
        )
        crops = (
            data if data is not None else sample_calibration_set(desc, size, self.config.calibration_samples)
        )
        provided: dict[Step[Any], Any] = {
            INT8_RECIPE: self.config.static or default_settings("cpu"),
            CALIBRATION_CROPS: [list(item) for item in crops],
        }
        label = f"{desc.model_type}/{desc.architecture} [{self.config.quantization_type.value} INT8]"
        return BuildContext(
            model, desc, settings, folder / ".steps", provided=provided, events=publish, label=label
        )

    def _onnx_results(
        self, model: nn.Module, desc: ModelDescriptor, data: Any, formats: Sequence[str]
    ) -> tuple[dict[str, Path], Any, BuildContext]:
        """The requested ONNX Runtime results, copied into the work folder under their documented names."""
        folder, tmp = self._work()
        ctx = self._graph(model, desc, folder, data)
        files: dict[str, Path] = {}
        for fmt in formats:
            step, name = ONNX_RESULTS[fmt]
            shutil.copyfile(ctx.get(step).main, folder / name)
            files[fmt] = folder / name
        if any(f != "dynamic" for f in formats):
            shutil.copyfile(ctx.get(INT8_RANGES).main, folder / "calibration.json")
        shutil.rmtree(folder / ".steps", ignore_errors=True)
        return files, tmp, ctx

    def _dynamic_onnx(
        self, model: nn.Module, desc: ModelDescriptor, data: Any, _device: str
    ) -> QuantizedModel:
        files, tmp, _ctx = self._onnx_results(model, desc, data, ["dynamic"])
        q = QuantizedModel(
            QuantizationType.DYNAMIC,
            "onnxruntime",
            "int8",
            desc,
            files,
            _tmp=tmp,
            min_psnr_db=self._gate("int8"),
        )
        return self._check(q, model)

    def _static_onnx(
        self, model: nn.Module, desc: ModelDescriptor, data: Any, _device: str
    ) -> QuantizedModel:
        files, tmp, ctx = self._onnx_results(model, desc, data, list(self.config.formats))
        recipe, crops = ctx.get(INT8_RECIPE), ctx.get(CALIBRATION_CROPS)
        q = QuantizedModel(
            QuantizationType.STATIC,
            "onnxruntime",
            "int8",
            desc,
            files,
            _tmp=tmp,
            min_psnr_db=self._gate("int8"),
            notes=[f"calibration: {recipe.method}, {len(crops)} samples"],
        )
        return self._check(q, model)

    # -- PyTorch --------------------------------------------------------------------------
    def _dynamic_torch(
        self, model: nn.Module, desc: ModelDescriptor, _data: Any, _device: str
    ) -> QuantizedModel:
        from .quantize_torch import dynamic_quantize_torch

        result = dynamic_quantize_torch(model)
        q = QuantizedModel(
            QuantizationType.DYNAMIC,
            "torch",
            "int8",
            desc,
            module=result.module,
            min_psnr_db=self._gate("int8"),
            notes=[result.note],
        )
        return self._check(q, model)

    def _static_torch(
        self, model: nn.Module, desc: ModelDescriptor, data: Any, _device: str
    ) -> QuantizedModel:
        from .quantize_torch import static_quantize_torch

        with tempfile.TemporaryDirectory(prefix="model_manager-quant-") as tmp:
            crops = self._graph(model, desc, Path(tmp), data).get(CALIBRATION_CROPS)
        example = sample_batch(desc, self._size(desc))
        result = static_quantize_torch(model, example, crops, value_range=desc.output.value_range)
        q = QuantizedModel(
            QuantizationType.STATIC,
            "torch",
            "int8",
            desc,
            module=result.module,
            min_psnr_db=self._gate("int8"),
            notes=[result.note],
        )
        return self._check(q, model)

    def _qat_convert(
        self, model: nn.Module, desc: ModelDescriptor, _data: Any, _device: str
    ) -> QuantizedModel:
        raise StrategyUnavailableError(
            "QAT needs training: call prepare_qat(model, example_inputs), fine-tune it, then "
            "convert_qat(prepared) (model_manager.optim.quantize_torch); quantize() cannot train for you"
        )

    def _bf16(self, model: nn.Module, desc: ModelDescriptor, _data: Any, device: str) -> QuantizedModel:
        from .hardware import probe_hardware

        if device != "cpu":
            raise StrategyUnavailableError("bf16 autocast is the CPU path here; on CUDA use FP16")
        q = QuantizedModel(
            QuantizationType.BF16,
            "torch",
            "bf16",
            desc,
            module=copy.deepcopy(model),
            min_psnr_db=self._gate("bf16"),
        )
        if not probe_hardware().native_bf16:
            q.notes.append("this CPU has no native BF16: it is emulated and usually slower than FP32")
        return self._check(q, model)

    def _fp16(self, model: nn.Module, desc: ModelDescriptor, _data: Any, device: str) -> QuantizedModel:
        if device != "cuda" or not torch.cuda.is_available():
            raise StrategyUnavailableError(
                "fp16 needs a CUDA device; on a CPU use bf16 (native BF16) or INT8"
            )
        q = QuantizedModel(
            QuantizationType.FP16,
            "torch",
            "fp16",
            desc,
            module=copy.deepcopy(model),
            min_psnr_db=self._gate("fp16"),
        )
        return self._check(q, model)

    # -- shared ---------------------------------------------------------------------------
    def _size(self, desc: ModelDescriptor) -> tuple[int, int]:
        return desc.fit_size(*self.config.input_size)

    def _gate(self, precision: str) -> float:
        if self.config.min_psnr_db is not None:
            return self.config.min_psnr_db
        return self.config.gates.for_precision(precision)

    def _check(self, q: QuantizedModel, model: nn.Module) -> QuantizedModel:
        """Quality of every produced variant against FP32 on real photos (at a size not calibrated on)."""
        h, w = self._size(q.descriptor)
        m = max(q.descriptor.size_multiple, 8)
        inputs = sample_batch(q.descriptor, (h + m, w + 2 * m), 2)
        with torch.inference_mode():
            reference = model(*[torch.from_numpy(x) for x in inputs]).numpy()
        for key in list(q.files) or [q.precision]:
            with q.runner(key if q.files else None, force=True) as runner:
                q.quality[key] = compare(
                    reference, runner(*inputs), q.descriptor.output.value_range
                ).to_dict()
        for key, rep in q.quality.items():
            if rep["psnr_db"] < q.min_psnr_db:
                q.notes.append(
                    f"{key}: {rep['psnr_db']:.1f} dB < gate {q.min_psnr_db} dB: reported, not served"
                )
        return q

    # -- the seed's helpers ---------------------------------------------------------------
    def benchmark_quantization(
        self,
        original_model: nn.Module,
        quantized_model: QuantizedModel,
        test_input: Any,
        num_iterations: int = 20,
    ) -> dict[str, Any]:
        """Speedup (eager FP32 median / quantized median, interleaved), size reduction and quality."""
        inputs = test_input if isinstance(test_input, list | tuple) else [test_input]
        arrays = [x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32) for x in inputs]
        desc = quantized_model.descriptor
        eager = TorchRunner(
            original_model, desc, RunnerInfo(desc.model_type, "fp32", "none", "torch", "cpu", "fp32")
        )
        quant = quantized_model.runner(force=True)
        timings = benchmark_interleaved(
            {"fp32": lambda: eager(*arrays), "quantized": lambda: quant(*arrays)}, rounds=num_iterations
        )
        original_bytes = sum(p.numel() * p.element_size() for p in original_model.parameters())
        q_bytes = _artifact_bytes(quantized_model)
        report: QualityReport = compare(eager(*arrays), quant(*arrays), desc.output.value_range)
        quant.close()
        return {
            "original_ms": timings["fp32"].median_ms,
            "quantized_ms": timings["quantized"].median_ms,
            "original_p90_ms": timings["fp32"].p90_ms,
            "quantized_p90_ms": timings["quantized"].p90_ms,
            "speedup": timings["fp32"].median_ms / timings["quantized"].median_ms,
            "original_bytes": original_bytes,
            "quantized_bytes": q_bytes,
            "size_reduction_percent": 100.0 * (1 - q_bytes / original_bytes) if original_bytes else 0.0,
            **{f"quality_{k}": v for k, v in report.to_dict().items()},
        }

    def save_quantized_model(self, quantized: QuantizedModel, path: str | Path) -> Path:
        """Save as a folder: ONNX files and/or safetensors weights, plus quantized.json. No pickles."""
        from ..checkpoint import weights_hash

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": SAVE_FORMAT,
            "quantization_type": quantized.quantization_type.value,
            "backend": quantized.backend,
            "precision": quantized.precision,
            "descriptor": quantized.descriptor.to_dict(),
            "quality": quantized.quality,
            "min_psnr_db": quantized.min_psnr_db,
            "notes": quantized.notes,
            "files": {},
        }
        for key, src in quantized.files.items():
            shutil.copy2(src, folder / src.name)
            meta["files"][key] = src.name
        if not quantized.files:
            meta["weights"] = _save_module_weights(quantized, folder)
            meta["weights_sha256"] = weights_hash(quantized.module.state_dict()) if quantized.module else None
        (folder / "quantized.json").write_text(json.dumps(meta, indent=2))
        return folder

    def load_quantized_model(self, path: str | Path) -> QuantizedModel:
        """Load what save_quantized_model wrote (JSON and ONNX / safetensors only)."""
        folder = Path(path)
        try:
            meta = json.loads((folder / "quantized.json").read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                f"{folder}: expected a saved quantized model (quantized.json): {exc}"
            ) from exc
        if meta.get("format") != SAVE_FORMAT:
            raise InvalidInputError(
                f"{folder}: saved format {meta.get('format')!r}, this version reads {SAVE_FORMAT}"
            )
        desc = descriptor_from_dict(meta["descriptor"])
        q = QuantizedModel(
            QuantizationType(meta["quantization_type"]),
            meta["backend"],
            meta["precision"],
            desc,
            {k: folder / v for k, v in meta["files"].items()},
            quality=meta["quality"],
            min_psnr_db=meta["min_psnr_db"],
            notes=list(meta["notes"]),
        )
        if not q.files:
            q.module = _load_module_weights(folder / meta["weights"], desc)
        return q


def _artifact_bytes(q: QuantizedModel) -> int:
    if q.files:
        return sum(p.stat().st_size for p in q.files.values())
    assert q.module is not None
    factor = 0.5 if q.precision in ("bf16", "fp16") else 1.0  # stored at reduced precision when saved
    return int(sum(p.numel() * p.element_size() for p in q.module.parameters()) * factor)


def _save_module_weights(q: QuantizedModel, folder: Path) -> str:
    from safetensors.torch import save_file

    if q.module is None or q.precision not in ("bf16", "fp16"):
        raise StrategyUnavailableError(
            "saving a PyTorch INT8 module: export it with quantize_torch.export_quantized_onnx, or use the "
            "onnxruntime backend, whose results are ONNX files"
        )
    dtype = torch.bfloat16 if q.precision == "bf16" else torch.float16
    save_file(
        {k: v.detach().to(dtype).contiguous() for k, v in q.module.state_dict().items()},
        str(folder / "weights.safetensors"),
    )
    return "weights.safetensors"


def _load_module_weights(path: Path, desc: ModelDescriptor) -> nn.Module:
    from safetensors.torch import load_file

    from ..models import all_architectures, load_strict

    arch = all_architectures()[desc.architecture]
    module = arch.build(**desc.hyperparameters)
    load_strict(module, {k: v.float() for k, v in load_file(str(path)).items()}, arch.id)
    return module.eval()


def _quantize_family(
    model: nn.Module,
    model_type: str,
    config: QuantizationConfig | None,
    calibration_data: Sequence[Sequence[np.ndarray]] | None,
) -> QuantizedModel:
    from ..checkpoint import describe_module

    return ModelQuantizer(config or QuantizationConfig(QuantizationType.STATIC)).quantize(
        model, calibration_data, descriptor=describe_module(model, model_type)
    )


def quantize_style_transfer_model(
    model: nn.Module,
    config: QuantizationConfig | None = None,
    calibration_data: Sequence[Sequence[np.ndarray]] | None = None,
) -> QuantizedModel:
    """Static INT8 (unless configured otherwise) of a style-transfer network."""
    return _quantize_family(model, "style_transfer", config, calibration_data)


def quantize_super_resolution_model(
    model: nn.Module,
    config: QuantizationConfig | None = None,
    calibration_data: Sequence[Sequence[np.ndarray]] | None = None,
) -> QuantizedModel:
    """Static INT8 (unless configured otherwise) of a super-resolution network."""
    return _quantize_family(model, "super_resolution", config, calibration_data)


def quantize_interpolation_model(
    model: nn.Module,
    config: QuantizationConfig | None = None,
    calibration_data: Sequence[Sequence[np.ndarray]] | None = None,
) -> QuantizedModel:
    """Static INT8 (unless configured otherwise) of a frame-interpolation network."""
    return _quantize_family(model, "interpolation", config, calibration_data)
