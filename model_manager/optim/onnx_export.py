"""PyTorch -> verified ONNX: export with dynamic batch / H / W, check, verify at another size.

Exporter choice: the TorchScript-based exporter (``dynamo=False``). Measured here with torch
2.13 on every registered architecture at dynamic batch / H / W: it exports all of them and ONNX
Runtime matches PyTorch at a size other than the export size (max abs error <= 2e-5). The
torch.export-based exporter (``dynamo=True``) needs onnxscript, exports 3-10x slower, and bakes
a shape into IFNet's timestep ``expand`` (ONNX Runtime fails with "invalid expand shape" at
any other size), so it is not used.

Verification always runs ONNX Runtime against PyTorch on real sample photos at a size (and
batch) different from the export's: dynamic axes that silently baked a shape fail there.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..descriptor import ModelDescriptor
from ..errors import ExportError, InvalidInputError
from .onnx_info import model_size_bytes
from .quality import compare
from .settings import DEFAULT_OPSET
from .verify_inputs import export_inputs_descriptor, verification_inputs

log = logging.getLogger(__name__)

TORCHSCRIPT_MAX_OPSET = 20
"""Highest opset torch's TorchScript exporter writes (torch.onnx._constants)."""
MIN_OPSET = 9
PROTOBUF_LIMIT = 2 * 1024**3

OptimizeLevel = Literal["none", "basic", "extended"]


@dataclass(frozen=True)
class ONNXExportConfig:
    """How to export and verify; defaults suit every registered architecture."""

    opset: int = DEFAULT_OPSET
    do_constant_folding: bool = True
    dynamic_batch: bool = True
    dynamic_spatial: bool = True
    verify: bool = True
    verify_max_abs_error: float = 1e-3
    """Largest allowed |ORT - PyTorch| on the 0..1-normalised output range."""
    raise_on_mismatch: bool = True
    """Raise ExportError when verification fails (else report ``verified=False``)."""
    external_data_threshold_bytes: int = PROTOBUF_LIMIT - 64 * 1024**2
    """Models whose weights exceed this are saved with external data (ONNX's 2 GB protobuf limit)."""
    optimize: OptimizeLevel = "none"
    """ONNX Runtime offline graph optimization saved into the file (see benchmarks/onnx_vs_eager.py)."""

    def __post_init__(self) -> None:
        if not MIN_OPSET <= self.opset <= TORCHSCRIPT_MAX_OPSET:
            raise InvalidInputError(
                f"opset must be in {MIN_OPSET}..{TORCHSCRIPT_MAX_OPSET} (the TorchScript exporter's "
                f"range), got {self.opset}"
            )
        if self.optimize not in ("none", "basic", "extended"):
            raise InvalidInputError(f"optimize must be 'none', 'basic' or 'extended', got {self.optimize!r}")
        if self.external_data_threshold_bytes < 0:
            raise InvalidInputError("external_data_threshold_bytes must be >= 0")


@dataclass
class ExportReport:
    """What an export produced and how well it matched PyTorch; indexable like the seed's dict."""

    path: str
    verified: bool
    max_difference: float | None
    psnr_db: float | None
    verify_shapes: dict[str, list[int]]
    opset: int
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    size_bytes: int
    external_data: bool
    export_seconds: float
    exporter: str = "torchscript"
    optimize: str = "none"
    verification_error: str | None = None
    files: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ONNXExporter:
    """Exports modules to ONNX and verifies the result against PyTorch with ONNX Runtime."""

    def __init__(self, config: ONNXExportConfig | None = None) -> None:
        self.config = config or ONNXExportConfig()

    def export(
        self,
        model: nn.Module,
        dummy_input: torch.Tensor | Sequence[torch.Tensor],
        export_path: str | Path,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
        dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
        *,
        descriptor: ModelDescriptor | None = None,
    ) -> ExportReport:
        """Export ``model`` at ``dummy_input``'s shapes, check the graph, verify at another size."""
        args = _as_args(dummy_input)
        path = _onnx_path(export_path)
        desc = descriptor or export_inputs_descriptor(args, input_names)
        names = list(input_names) if input_names is not None else [s.name for s in desc.inputs]
        outs = list(output_names) if output_names is not None else ["output"]
        _check_names(names, outs, args)
        axes = _check_axes(dynamic_axes, names, outs) if dynamic_axes is not None else self._axes(desc, outs)
        started = time.perf_counter()
        _torch_export(model, args, path, names, outs, axes, self.config)
        external = _externalize_if_large(path, self.config.external_data_threshold_bytes)
        _check_graph(path)
        if self.config.optimize != "none":
            optimize_onnx(path, path, self.config.optimize)
        report = ExportReport(
            path=str(path),
            verified=False,
            max_difference=None,
            psnr_db=None,
            verify_shapes={},
            opset=self.config.opset,
            input_names=names,
            output_names=outs,
            dynamic_axes=axes,
            size_bytes=model_size_bytes(path),
            external_data=external,
            export_seconds=time.perf_counter() - started,
            optimize=self.config.optimize,
            files=[p.name for p in _artifact_files(path)],
        )
        if self.config.verify:
            self._verify(model, desc, args, axes, report)
        return report

    def _axes(self, desc: ModelDescriptor, outs: list[str]) -> dict[str, dict[int, str]]:
        """Dynamic axes from the descriptor, limited by the config's batch / spatial switches."""
        keep = {"batch"} if self.config.dynamic_batch else set()

        def allowed(dim_name: str) -> bool:
            return dim_name in keep or (self.config.dynamic_spatial and dim_name != "batch")

        axes = {s.name: {i: n for i, n in s.dynamic_dims.items() if allowed(n)} for s in desc.inputs}
        for out in outs:
            axes[out] = {i: n for i, n in desc.output.dynamic_dims.items() if allowed(n)}
        return {k: v for k, v in axes.items() if v}

    def _verify(
        self,
        model: nn.Module,
        desc: ModelDescriptor,
        args: tuple[torch.Tensor, ...],
        axes: Mapping[str, Mapping[int, str]],
        report: ExportReport,
    ) -> None:
        """Run ORT and PyTorch on real photos at another size; fill in the report or raise."""
        from ..runners.ort_session import create_session, run_session

        inputs = verification_inputs(desc, args, axes)
        report.verify_shapes = {n: list(x.shape) for n, x in zip(report.input_names, inputs)}
        with torch.inference_mode():
            expected = model(*[torch.from_numpy(x) for x in inputs]).numpy()
        try:
            session = create_session(Path(report.path))
            got = run_session(session, dict(zip(report.input_names, inputs)))[0]
            q = compare(expected, got, desc.output.value_range)
            report.max_difference, report.psnr_db = q.max_abs_error, q.psnr_db
            report.verified = q.max_abs_error <= self.config.verify_max_abs_error
            if not report.verified:
                report.verification_error = (
                    f"max abs error {q.max_abs_error:.3g} > {self.config.verify_max_abs_error:g}"
                )
        except Exception as exc:  # ORT refusing the new shape is exactly what verification is for
            report.verification_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        if not report.verified:
            msg = (
                f"ONNX export of {type(model).__name__} failed verification at "
                f"{report.verify_shapes}: {report.verification_error} (a dynamic axis baked as a "
                f"constant fails here)"
            )
            log.warning(msg)
            if self.config.raise_on_mismatch:
                raise ExportError(msg)


def _as_args(dummy_input: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    args = (dummy_input,) if isinstance(dummy_input, torch.Tensor) else tuple(dummy_input)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise InvalidInputError(
            f"dummy_input: expected a tensor or a sequence of tensors, got {type(dummy_input).__name__}"
        )
    return tuple(a.detach().float().cpu() for a in args)


def _onnx_path(export_path: str | Path) -> Path:
    path = Path(export_path).expanduser()
    if path.suffix != ".onnx":
        raise InvalidInputError(f"export_path: expected a file name ending in .onnx, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".data").unlink(missing_ok=True)  # a previous export's external weights
    return path


def _check_names(names: Sequence[str], outs: Sequence[str], args: tuple[torch.Tensor, ...]) -> None:
    if len(names) != len(args):
        raise InvalidInputError(
            f"input_names: expected {len(args)} name(s), one per input, got {list(names)}"
        )
    if len(set(names) | set(outs)) != len(names) + len(outs):
        raise InvalidInputError(f"input and output names must be unique, got {list(names)} / {list(outs)}")


def _check_axes(
    axes: Mapping[str, Mapping[int, str]], names: Sequence[str], outs: Sequence[str]
) -> dict[str, dict[int, str]]:
    unknown = sorted(set(axes) - set(names) - set(outs))
    if unknown:
        raise InvalidInputError(
            f"dynamic_axes names {unknown} that are not inputs {list(names)} or outputs {list(outs)}"
        )
    return {k: {int(i): str(n) for i, n in v.items()} for k, v in axes.items()}


_OPERATOR_RE = re.compile(r"operator '?([A-Za-z_:.0-9]+)'?")


def _torch_export(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    names: list[str],
    outs: list[str],
    axes: Mapping[str, Mapping[int, str]],
    config: ONNXExportConfig,
) -> None:
    """torch.onnx.export (TorchScript exporter); failures become ExportError naming the operator."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # The legacy exporter is deprecated (see the module docstring for why it is used) and
            # warns about InstanceNorm using input statistics in eval mode, which is correct.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # baked shapes fail verification
            torch.onnx.export(
                model,
                args,
                str(path),
                input_names=names,
                output_names=outs,
                dynamic_axes={k: dict(v) for k, v in axes.items()},
                opset_version=config.opset,
                do_constant_folding=config.do_constant_folding,
                dynamo=False,
            )
    except Exception as exc:
        text = str(exc)
        match = _OPERATOR_RE.search(text)
        op = match.group(1) if match else None
        raise ExportError(
            f"cannot export {type(model).__name__} to ONNX opset {config.opset}"
            f"{f' (operator {op})' if op else ''}: {text.splitlines()[0] if text else type(exc).__name__}",
            operator=op,
        ) from exc
    finally:
        model.train(was_training)


def _externalize_if_large(path: Path, threshold: int) -> bool:
    """Move the weights to ``<stem>.data`` beside the model when they exceed ``threshold`` bytes."""
    import onnx

    proto = onnx.load(str(path), load_external_data=True)
    weights = sum(len(t.raw_data) for t in proto.graph.initializer)
    if weights <= threshold:
        return False
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.with_suffix(".data").name,
        size_threshold=0,
    )
    return True


def _check_graph(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported graph {path.name} is invalid: {str(exc).splitlines()[0]}") from exc


def _artifact_files(path: Path) -> list[Path]:
    data = path.with_suffix(".data")
    return [path, data] if data.exists() else [path]


def optimize_onnx(source: Path, target: Path, level: OptimizeLevel = "basic") -> Path:
    """Save ONNX Runtime's offline-optimized graph (``basic`` stays portable across machines)."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[level]
    tmp = target.with_name(target.stem + ".opt.onnx")
    opts.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
    tmp.replace(target)
    return target


def _export_family(
    model: nn.Module,
    model_type: str,
    export_path: str | Path,
    input_size: tuple[int, int],
    config: ONNXExportConfig | None,
    descriptor: ModelDescriptor | None,
) -> ExportReport:
    from ..checkpoint import describe_module
    from ..samples import sample_batch

    desc = descriptor or describe_module(model, model_type)
    dummy = [torch.from_numpy(x) for x in sample_batch(desc, desc.fit_size(*input_size))]
    return ONNXExporter(config).export(model, dummy, export_path, descriptor=desc)


def export_style_transfer_to_onnx(
    model: nn.Module,
    export_path: str | Path,
    input_size: tuple[int, int] = (256, 256),
    config: ONNXExportConfig | None = None,
    descriptor: ModelDescriptor | None = None,
) -> ExportReport:
    """Export a style-transfer network (architecture detected from its weights unless described)."""
    return _export_family(model, "style_transfer", export_path, input_size, config, descriptor)


def export_super_resolution_to_onnx(
    model: nn.Module,
    export_path: str | Path,
    input_size: tuple[int, int] = (128, 128),
    config: ONNXExportConfig | None = None,
    descriptor: ModelDescriptor | None = None,
) -> ExportReport:
    """Export a super-resolution network (architecture detected from its weights unless described)."""
    return _export_family(model, "super_resolution", export_path, input_size, config, descriptor)


def export_interpolation_to_onnx(
    model: nn.Module,
    export_path: str | Path,
    input_size: tuple[int, int] = (256, 256),
    config: ONNXExportConfig | None = None,
    descriptor: ModelDescriptor | None = None,
) -> ExportReport:
    """Export a frame-interpolation network with inputs (img0, img1, timestep)."""
    return _export_family(model, "interpolation", export_path, input_size, config, descriptor)


def benchmark_onnx_model(
    model_path: str | Path,
    test_input: Any,
    num_iterations: int = 50,
    *,
    warmup: int = 5,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Time ONNX Runtime on ``test_input`` (array / tensor, or one per graph input, in order).

    Returns the seed's ``average_time_ms`` and ``throughput_fps`` plus median, p90 and size.
    """
    import numpy as np

    from ..runners.ort_session import create_session, run_session
    from .benchmark import benchmark

    session = create_session(Path(model_path), num_threads=num_threads)
    items = test_input if isinstance(test_input, list | tuple) else [test_input]
    arrays = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in items]
    names = [i.name for i in session.get_inputs()]
    if len(arrays) != len(names):
        raise InvalidInputError(
            f"test_input: expected {len(names)} array(s) for inputs {names}, got {len(arrays)}"
        )
    feeds = dict(zip(names, arrays))
    batch = int(arrays[0].shape[0]) if arrays[0].ndim else 1
    result = benchmark(
        lambda: run_session(session, feeds),
        label=Path(model_path).name,
        warmup=warmup,
        iterations=num_iterations,
        batch=batch,
        size_bytes=model_size_bytes(model_path),
    )
    return {
        **result.to_dict(),
        "average_time_ms": result.mean_ms,
        "throughput_fps": batch * 1000.0 / result.mean_ms,
    }
