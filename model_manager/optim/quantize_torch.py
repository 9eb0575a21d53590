"""PyTorch-level INT8 quantization: dynamic, static post-training (calibrated), and QAT, honestly reported.

Flow choice: FX graph mode (``torch.ao.quantization.quantize_fx``: ``prepare_fx`` / ``prepare_qat_fx``
/ ``convert_fx`` with ``get_default_qconfig_mapping(backend)``). Checked in this venv (torch 2.13,
CPU): the PT2E flow is gone from torch (``torch.ao.quantization.quantize_pt2e`` and
``torch.ao.quantization.quantizer`` no longer exist; they moved to the separate ``torchao``
package, which is not installed), so ``X86InductorQuantizer`` / ``prepare_pt2e`` are not
available. The FX flow is deprecated but still shipped, and it works on all four convolutional
families (ESPCN, SRVGGNetCompact, TransformerNet, IFNet; RRDBNet too): it fuses Conv+ReLU,
quantizes Conv2d, ConvTranspose2d, PReLU, LeakyReLU, InstanceNorm2d, add and mul, and leaves
what the backend cannot run quantized (ReflectionPad2d, IFNet's ``grid_sample`` warp) in float
behind a dequantize. Symbolic tracing copes with IFNet's shape arithmetic; a model whose control
flow depends on tensor values cannot be traced and raises :class:`EngineBuildError`.

Measured here (2-core Sapphire Rapids, published-size random-weight models, 128x128, one
photo, medians of 10 calls, 2-3 runs each): ESPCN 6.7-7.6x faster, SRVGGNetCompact 5.8-7.3x,
TransformerNet 3-5x, IFNet not faster (0.8-0.95x: its many small low-resolution convs and float
warps cost more in quantize/dequantize than int8 saves); state dicts 71-74 % smaller. Random
weights make PSNR a weak guide: IFNet's chained warps amplify int8 error (23 dB) where the
others stay at 40-66 dB.

Dynamic quantization (``quantize_dynamic``) only covers Linear / LSTM / GRU; on our conv nets it
changes nothing, and :func:`dynamic_quantize_torch` says so instead of pretending.

The quantized modules run on the quantized engine chosen by :func:`select_backend` ("x86" on
x86-64: fbgemm + oneDNN; "qnnpack" on ARM); ``torch.backends.quantized.engine`` is set to it
(packed weights are tied to the engine they were packed with).

ONNX: a converted model exports with the TorchScript exporter as QuantizeLinear /
DequantizeLinear around float Conv, int8 weights (QDQ). The exporter has no quantized
DepthToSpace or PReLU symbolic, so :func:`prepare_qat` keeps ``nn.PixelShuffle`` in float by
default (ESPCN then exports); a quantized PReLU (SRVGGNetCompact) still does not export. The
reference-model path (``convert_to_reference_fx``) does not export at all in torch 2.13
(the tracer chokes on a ``torch.qscheme`` attribute).

Timings come from the one harness (:func:`benchmark`); quality from :func:`compare`, against the
FP32 module on the caller's real-photo inputs.
"""

from __future__ import annotations

import copy
import io
import operator
import platform
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EngineBuildError, InvalidInputError, StrategyUnavailableError
from .benchmark import benchmark
from .layer_names import FX_OP_SEPARATOR
from .quality import QualityReport, compare

BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
"""Quantized engines the FX flow has default qconfigs for."""

DYNAMIC_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.LSTM, nn.GRU)
"""Layer types ``quantize_dynamic`` replaces; nothing else is touched by dynamic quantization."""

FloatOp = type[nn.Module] | Callable[..., Any]
"""A module type or a function (``torch.cat``, ``operator.add``) to leave in float."""

STATIC_KEEP_FLOAT: tuple[FloatOp, ...] = (torch.cat,)
"""Left in float by default: a quantized ``cat`` of inputs with different scales requantizes them
(slow, and torch warns of inaccuracy). Measured here at 128x128: IFNet int8 43 -> 24 ms, RRDBNet
(3 blocks, 64x64) 51 -> 30 ms, PSNR unchanged."""

QAT_KEEP_FLOAT: tuple[FloatOp, ...] = (torch.cat, nn.PixelShuffle)
"""As :data:`STATIC_KEEP_FLOAT`, plus PixelShuffle (the ONNX exporter has no quantized DepthToSpace)."""

_X86 = {"x86_64", "amd64", "x86", "i386", "i686"}

Inputs = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


@dataclass
class TorchQuantResult:
    """A quantized module, the layers actually replaced, and a plain-words note on what happened."""

    module: nn.Module
    quantized_layers: list[str]
    note: str
    flow: str
    backend: str | None = None
    quality: QualityReport | None = None
    float_ops: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- backend


def select_backend(machine: str | None = None) -> str:
    """The quantized engine for this CPU: "x86" on x86-64 (fbgemm/oneDNN), "qnnpack" on ARM."""
    arch = (machine or platform.machine()).lower()
    preferred: tuple[str, ...]
    if arch in _X86:
        preferred = ("x86", "fbgemm", "onednn")
    elif arch.startswith(("arm", "aarch")):
        preferred = ("qnnpack",)
    else:
        raise StrategyUnavailableError(f"no INT8 quantized engine known for CPU architecture {arch!r}")
    supported = torch.backends.quantized.supported_engines
    for engine in preferred:
        if engine in supported:
            return engine
    raise StrategyUnavailableError(
        f"this torch build has quantized engines {supported}; none of {list(preferred)} for {arch}"
    )


def _resolve_backend(backend: str) -> str:
    """``backend`` checked against the known and the built engines; "auto" picks one."""
    if backend == "auto":
        return select_backend()
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend: expected 'auto' or one of {list(BACKENDS)}, got {backend!r}")
    if backend not in torch.backends.quantized.supported_engines:
        raise StrategyUnavailableError(
            f"quantized engine {backend!r} is not in this torch build "
            f"({torch.backends.quantized.supported_engines})"
        )
    return backend


def _use_engine(backend: str) -> None:
    """Make ``backend`` the quantized engine (weights are packed for, and run on, that engine)."""
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend


def _backend_config(backend: str) -> Any:
    from torch.ao.quantization import backend_config as bc

    return {
        "qnnpack": bc.get_qnnpack_backend_config,
        "onednn": bc.get_onednn_backend_config,
        "fbgemm": bc.get_fbgemm_backend_config,
    }.get(backend, bc.get_native_backend_config)()


def _qconfig_mapping(
    backend: str, qat: bool, keep_float: Sequence[FloatOp] = (), float_modules: Sequence[str] = ()
) -> Any:
    """The backend's default (QAT) qconfig mapping; ``keep_float`` types / functions and the
    ``float_modules`` (the float-layer decision: qualified module names, and functional calls as
    ``scope::Op::index``, ``layer_names.fx_functional_op``) stay unquantized."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping

    mapping = get_default_qat_qconfig_mapping(backend) if qat else get_default_qconfig_mapping(backend)
    for kind in keep_float:
        mapping.set_object_type(kind, None)
    for name in float_modules:
        if FX_OP_SEPARATOR in name:
            scope, op, index = name.split(FX_OP_SEPARATOR)
            for function in _FUNCTIONS[op]:
                mapping.set_module_name_object_type_order(scope, function, int(index), None)
        else:
            mapping.set_module_name(name, None)
    return mapping


_FUNCTIONS: dict[str, tuple[Callable[..., Any], ...]] = {
    "Add": (operator.add, torch.add),
    "Sub": (operator.sub, torch.sub),
    "Mul": (operator.mul, torch.mul),
    "Resize": (F.interpolate,),
    "Relu": (F.relu, torch.relu),
}
"""The Python calls behind each of ``layer_names.FX_FUNCTIONAL_OPS``."""


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.ao's deprecation notice (it moved to torchao) and tracing chatter.

    Also skips FX's per-node stack traces (``torch.fx.config.do_not_emit_stack_traces``): they are
    for debugging a graph, and recording them was a quarter of tracing IFNet (about 1 s of 3.6).
    """
    import torch.fx.config as fx_config

    emit = fx_config.do_not_emit_stack_traces
    fx_config.do_not_emit_stack_traces = True
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        warnings.filterwarnings("ignore", message=r"All inputs of this cat operator")
        try:
            yield
        finally:
            fx_config.do_not_emit_stack_traces = emit


# --------------------------------------------------------------------------- inputs


def _as_inputs(value: Any, what: str) -> tuple[torch.Tensor, ...]:
    """A tensor, array or sequence of them as a tuple of float32 CPU tensors; else InvalidInputError."""
    items = (value,) if isinstance(value, torch.Tensor | np.ndarray) else value
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise InvalidInputError(
            f"{what}: expected a tensor, a numpy array or a non-empty sequence of them, "
            f"got {type(value).__name__}"
        )
    out = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32))
        if not isinstance(item, torch.Tensor) or not item.is_floating_point():
            got = item.dtype if isinstance(item, torch.Tensor) else type(item).__name__
            raise InvalidInputError(f"{what}[{i}]: expected a floating-point tensor or array, got {got}")
        out.append(item.detach().float().cpu())
    return tuple(out)


def _check_module(module: Any) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise InvalidInputError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    return module


def _calibration(batches: Iterable[Any], arity: int) -> list[tuple[torch.Tensor, ...]]:
    """Calibration batches as input tuples of the example's arity; at least one is required."""
    if isinstance(batches, torch.Tensor | np.ndarray):
        raise InvalidInputError(
            "calibration_batches: expected an iterable of batches (each a tensor/array or a sequence "
            f"of them), got a single {type(batches).__name__}; wrap it in a list"
        )
    out = [_as_inputs(b, f"calibration_batches[{i}]") for i, b in enumerate(batches)]
    if not out:
        raise InvalidInputError("calibration_batches: expected at least one batch of real images, got none")
    for i, b in enumerate(out):
        if len(b) != arity:
            raise InvalidInputError(
                f"calibration_batches[{i}]: expected {arity} input(s) like example_inputs, got {len(b)}"
            )
    return out


# --------------------------------------------------------------------------- inspecting results


def _is_quantized_module(module: nn.Module) -> bool:
    name = type(module).__module__
    return name.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and not isinstance(
        module, torch.ao.nn.quantized.DeQuantize | torch.ao.nn.quantized.Quantize
    )


def quantized_module_names(module: nn.Module) -> list[str]:
    """Names of the submodules that are quantized kernels (int8 weights / int8 activations)."""
    return [name for name, m in module.named_modules() if name and _is_quantized_module(m)]


def _op_name(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


_NOT_COMPUTE = {"dequantize", "getattr", "getitem", "size"}


def float_ops_after_dequantize(module: nn.Module) -> list[str]:
    """Ops of a converted FX graph that consume a dequantized tensor, i.e. run in float."""
    if not isinstance(module, torch.fx.GraphModule):
        return []
    names: list[str] = []
    for node in module.graph.nodes:
        if node.op not in ("call_function", "call_method", "call_module"):
            continue
        fed = any(
            isinstance(a, torch.fx.Node) and a.op == "call_method" and a.target == "dequantize"
            for a in node.all_input_nodes
        )
        name = _op_name(node, module)
        if fed and name not in names and name not in _NOT_COMPUTE:
            names.append(name)
    return names


def count_quant_nodes(module: nn.Module) -> dict[str, int]:
    """How many quantize_per_tensor / dequantize nodes and quantized kernels a converted graph has."""
    counts = {"quantize": 0, "dequantize": 0, "quantized_ops": 0}
    if isinstance(module, torch.fx.GraphModule):
        for node in module.graph.nodes:
            target = str(getattr(node.target, "__name__", node.target))
            if target.startswith("quantize_per_"):
                counts["quantize"] += 1
            elif target == "dequantize":
                counts["dequantize"] += 1
            elif node.op == "call_function" and "quantized" in str(node.target):
                counts["quantized_ops"] += 1
    counts["quantized_ops"] += len(quantized_module_names(module))
    return counts


_FAILED_OP_RE = re.compile(r"Could not run '([^']+)'")


def _build_error(stage: str, module: nn.Module, exc: BaseException) -> EngineBuildError:
    """An EngineBuildError naming the stage, the model and, when the message has it, the operator."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = _FAILED_OP_RE.search(str(exc))
    op = f" (operator {match.group(1)} has no quantized kernel)" if match else ""
    return EngineBuildError(
        f"FX INT8 quantization of {type(module).__name__} failed while {stage}{op}: "
        f"{type(exc).__name__}: {text[:300]}"
    )


def _run(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        out = module(*inputs)
    if not isinstance(out, torch.Tensor):
        raise EngineBuildError(f"expected the model to return one tensor, got {type(out).__name__}")
    return out


def _check_output(reference: torch.Tensor, got: torch.Tensor, model: nn.Module) -> None:
    if got.shape != reference.shape:
        raise EngineBuildError(
            f"quantized {type(model).__name__} gave shape {tuple(got.shape)}, "
            f"FP32 gave {tuple(reference.shape)}"
        )
    if not torch.isfinite(got).all():
        raise EngineBuildError(f"quantized {type(model).__name__} produced non-finite values")


# --------------------------------------------------------------------------- dynamic


def dynamic_quantize_torch(module: nn.Module, dtype: torch.dtype = torch.qint8) -> TorchQuantResult:
    """``quantize_dynamic`` on Linear/LSTM/GRU; reports exactly which layers were replaced (maybe none)."""
    _check_module(module)
    if dtype not in (torch.qint8, torch.float16):
        raise InvalidInputError(f"dtype: expected torch.qint8 or torch.float16, got {dtype}")
    before = {name: type(m) for name, m in module.named_modules()}
    with _quiet():
        quantized = torch.ao.quantization.quantize_dynamic(
            module, set(DYNAMIC_TYPES), dtype=dtype, inplace=False
        )
    replaced = [
        name for name, m in quantized.named_modules() if name in before and type(m) is not before[name]
    ]
    if not replaced:
        note = "no Linear/LSTM/GRU layers: dynamic quantization changed nothing"
    else:
        note = f"dynamic {dtype} quantization replaced {len(replaced)} layer(s): {', '.join(replaced)}"
    return TorchQuantResult(quantized, replaced, note, flow="dynamic")


# --------------------------------------------------------------------------- static (PTQ)


def static_quantize_torch(
    module: nn.Module,
    example_inputs: Inputs,
    calibration_batches: Iterable[Inputs],
    backend: str = "auto",
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    keep_float: Sequence[FloatOp] = STATIC_KEEP_FLOAT,
) -> TorchQuantResult:
    """Post-training static INT8 (FX graph mode), calibrated on real photos; PSNR vs FP32 in ``quality``."""
    _check_module(module)
    example = _as_inputs(example_inputs, "example_inputs")
    batches = _calibration(calibration_batches, len(example))
    engine = _resolve_backend(backend)
    _use_engine(engine)
    from torch.ao.quantization.quantize_fx import prepare_fx

    reference = _run(copy.deepcopy(module).eval(), example)
    prepared = _fx_prepare(prepare_fx, module, example, engine, keep_float, qat=False)
    with _quiet():
        try:
            for batch in batches:
                _run(prepared, batch)
        except Exception as exc:
            raise _build_error("calibrating", module, exc) from exc
    quantized = _convert(prepared, engine, module)
    try:
        got = _run(quantized, example)
    except Exception as exc:
        raise _build_error("running the int8 graph", module, exc) from exc
    _check_output(reference, got, module)
    layers = quantized_module_names(quantized)
    if not layers:
        raise EngineBuildError(f"FX INT8 quantization of {type(module).__name__} quantized no layer")
    quality = compare(reference, got, value_range)
    floats = float_ops_after_dequantize(quantized)
    note = (
        f"FX static INT8 on {engine}: {len(layers)} layer(s) quantized, calibrated on {len(batches)} "
        f"batch(es); PSNR vs FP32 {quality.psnr_db:.1f} dB"
        + (f"; in float: {', '.join(floats)}" if floats else "")
    )
    return TorchQuantResult(quantized, layers, note, "fx-static", engine, quality, floats)


# --------------------------------------------------------------------------- QAT


def prepare_qat(
    module: nn.Module,
    example_inputs: Inputs,
    backend: str = "auto",
    keep_float: Sequence[FloatOp] = QAT_KEEP_FLOAT,
) -> nn.Module:
    """A train-mode copy of ``module`` with fake-quant (FX ``prepare_qat_fx``), ready to fine-tune."""
    _check_module(module)
    example = _as_inputs(example_inputs, "example_inputs")
    engine = _resolve_backend(backend)
    _use_engine(engine)
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    prepared = _fx_prepare(prepare_qat_fx, module, example, engine, keep_float, qat=True)
    prepared.meta["quantize_torch_backend"] = engine
    return prepared


def qat_fine_tune(
    prepared: nn.Module,
    teacher: nn.Module,
    batches: Sequence[Inputs],
    steps: int = 5,
    lr: float = 1e-4,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.l1_loss,
) -> list[float]:
    """Fine-tune a QAT-prepared model to match the FP32 ``teacher`` on real-image batches (Adam); losses."""
    if steps < 1:
        raise InvalidInputError(f"steps: expected >= 1, got {steps}")
    data = [_as_inputs(b, f"batches[{i}]") for i, b in enumerate(batches)]
    if not data:
        raise InvalidInputError("batches: expected at least one batch of real images, got none")
    targets = [_run(teacher.eval(), b) for b in data]
    prepared.train()
    optimizer = torch.optim.Adam(prepared.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        i = step % len(data)
        optimizer.zero_grad()
        loss = loss_fn(prepared(*data[i]), targets[i])
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def convert_qat(prepared: nn.Module) -> nn.Module:
    """The int8 model from a (fine-tuned) QAT-prepared one; ``prepared`` itself is left as it was."""
    if not isinstance(prepared, torch.fx.GraphModule):
        raise InvalidInputError(
            f"prepared: expected the GraphModule prepare_qat returned, got {type(prepared).__name__}"
        )
    engine = str(prepared.meta.get("quantize_torch_backend", select_backend()))
    _use_engine(engine)
    from torch.ao.quantization.quantize_fx import convert_fx

    model = copy.deepcopy(prepared).eval()
    with _quiet():
        try:
            return convert_fx(model, backend_config=_backend_config(engine))
        except Exception as exc:
            raise _build_error("converting the QAT model to int8", prepared, exc) from exc


def export_quantized_onnx(
    converted: nn.Module,
    example_inputs: Inputs,
    path: str | Path,
    *,
    descriptor: Any = None,
    max_abs_error: float = 0.02,
) -> Any:
    """Export a converted int8 model to QDQ ONNX (TorchScript exporter) and verify it with ONNX Runtime.

    ``max_abs_error`` (0..1-normalised output) is looser than FP32 export's: ONNX Runtime and
    PyTorch's int8 kernels may round an intermediate value to neighbouring levels.
    """
    from .onnx_export import ONNXExportConfig, ONNXExporter

    example = _as_inputs(example_inputs, "example_inputs")
    config = ONNXExportConfig(verify_max_abs_error=max_abs_error)
    with _quiet():
        return ONNXExporter(config).export(converted, example, path, descriptor=descriptor)


# --------------------------------------------------------------------------- measuring


def state_dict_bytes(module: nn.Module) -> int:
    """Bytes of ``torch.save(module.state_dict())`` (int8 weights count as one byte each)."""
    buffer = io.BytesIO()
    with _quiet():
        torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def benchmark_torch_quantization(
    original: nn.Module,
    quantized: nn.Module,
    inputs: Inputs,
    num_iterations: int = 10,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    warmup: int = 2,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Serialized size, median latency (the shared harness), speedup and PSNR of int8 vs FP32.

    ``speedup`` is FP32 median / int8 median at the threads torch uses now; the minima are kept
    too (less sensitive to a busy machine). Sizes are ``torch.save`` of each state dict.
    """
    if num_iterations < 1:
        raise InvalidInputError(f"num_iterations: expected >= 1, got {num_iterations}")
    args = _as_inputs(inputs, "inputs")
    reference, got = _run(original.eval(), args), _run(quantized.eval(), args)
    quality = compare(reference, got, value_range)
    original_bytes, quantized_bytes = state_dict_bytes(original), state_dict_bytes(quantized)

    def timed(model: nn.Module) -> tuple[float, float]:
        def call() -> None:
            with torch.inference_mode():
                model(*args)

        result = benchmark(call, warmup=warmup, iterations=num_iterations, max_seconds=max_seconds)
        return result.median_ms, result.min_ms

    (original_ms, original_min), (quantized_ms, quantized_min) = timed(original), timed(quantized)
    return {
        "original_bytes": original_bytes,
        "quantized_bytes": quantized_bytes,
        "size_reduction_percent": 100.0 * (1.0 - quantized_bytes / original_bytes),
        "original_ms": original_ms,
        "quantized_ms": quantized_ms,
        "speedup": original_ms / quantized_ms,
        "original_min_ms": original_min,
        "quantized_min_ms": quantized_min,
        "psnr_db": quality.psnr_db,
        "ssim": quality.ssim,
        "max_abs_error": quality.max_abs_error,
        "iterations": num_iterations,
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- cacheable static INT8


def prepare_static(
    module: nn.Module,
    example_inputs: Inputs,
    backend: str = "auto",
    keep_float: Sequence[FloatOp] = STATIC_KEEP_FLOAT,
    float_modules: Sequence[str] = (),
) -> nn.Module:
    """A deep copy of ``module`` traced with observers inserted (FX), ready for calibration;
    ``float_modules`` (qualified names) get no observers and stay in float."""
    from torch.ao.quantization.quantize_fx import prepare_fx

    engine = _resolve_backend(backend)
    _use_engine(engine)
    example = _as_inputs(example_inputs, "example_inputs")
    return _fx_prepare(
        prepare_fx, module, example, engine, keep_float, qat=False, float_modules=float_modules
    )


def _fx_prepare(
    prepare: Any,
    module: nn.Module,
    example: Any,
    engine: str,
    keep_float: Sequence[FloatOp],
    *,
    qat: bool,
    float_modules: Sequence[str] = (),
) -> Any:
    """FX-prepare a train (QAT) or eval (PTQ) copy of ``module``; a build error naming the step."""
    with _quiet():
        try:
            return prepare(
                copy.deepcopy(module).train(qat),
                _qconfig_mapping(engine, qat=qat, keep_float=keep_float, float_modules=float_modules),
                example,
                backend_config=_backend_config(engine),
            )
        except Exception as exc:
            step = "preparing for QAT" if qat else "tracing and inserting observers"
            raise _build_error(step, module, exc) from exc


def calibrate_observed(prepared: nn.Module, batches: Iterable[Inputs], arity: int) -> dict[str, torch.Tensor]:
    """Run the calibration batches; return the observed state (weights + observer ranges) as tensors.

    This state is what the cache stores (as safetensors): re-tracing the FP32 module, loading it and
    converting rebuilds the identical INT8 model without calibrating again and without a pickle.
    """
    with _quiet():
        for batch in _calibration(batches, arity):
            _run(prepared, batch)
    return {k: v.detach().clone() for k, v in prepared.state_dict().items()}


def quantized_from_observed(
    module: nn.Module,
    example_inputs: Inputs,
    observed: dict[str, torch.Tensor],
    backend: str = "auto",
    float_modules: Sequence[str] = (),
) -> nn.Module:
    """Rebuild the INT8 model from the FP32 module and a saved observed state (no calibration)."""
    prepared = prepare_static(module, example_inputs, backend, float_modules=float_modules)
    with _quiet():
        prepared.load_state_dict(observed, strict=True)
    return _convert(prepared, _resolve_backend(backend), module)


def convert_calibrated(prepared: nn.Module, module: nn.Module, backend: str = "auto") -> nn.Module:
    """The INT8 model from a calibrated prepared model (``module`` names the model in errors)."""
    engine = _resolve_backend(backend)
    _use_engine(engine)
    return _convert(prepared, engine, module)


def _convert(prepared: nn.Module, engine: str, module: nn.Module) -> nn.Module:
    """``convert_fx`` of a calibrated (or restored) prepared model; a build error naming the step."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        try:
            return convert_fx(prepared, backend_config=_backend_config(engine))  # type: ignore[arg-type]
        except Exception as exc:
            raise _build_error("converting to int8", module, exc) from exc
