"""PyTorch-level INT8 quantization on real photos: dynamic (honest no-op on convs), FX static, QAT -> ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from model_manager.errors import EngineBuildError, InvalidInputError, StrategyUnavailableError
from model_manager.models import all_architectures
from model_manager.optim.quality import compare
from model_manager.optim.quantize_torch import (
    benchmark_torch_quantization,
    convert_qat,
    count_quant_nodes,
    dynamic_quantize_torch,
    export_quantized_onnx,
    prepare_qat,
    qat_fine_tune,
    quantized_module_names,
    select_backend,
    static_quantize_torch,
)

from .conftest import sample_inputs, small_config

# Running an int8 module warns that quantized tensor dtypes are deprecated (torch 2.13); known, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")


def _model(arch_id: str, **overrides: object):
    return all_architectures()[arch_id].create({**small_config(arch_id), **overrides}, seed=0)


def _calibration(descriptor, size: int = 48, count: int = 4) -> list[list[np.ndarray]]:
    """``count`` single-photo batches (astronaut, coffee, chelsea, rocket) at ``size`` x ``size``."""
    batch = sample_inputs(descriptor, (size, size), count)
    return [[x[i : i + 1] for x in batch] for i in range(count)]


# --------------------------------------------------------------------------- backend


def test_select_backend_is_x86_here_and_qnnpack_on_arm() -> None:
    assert select_backend() == "x86"
    assert select_backend("aarch64") == "qnnpack"
    assert select_backend("arm64") == "qnnpack"
    with pytest.raises(StrategyUnavailableError, match="riscv64"):
        select_backend("riscv64")


# --------------------------------------------------------------------------- dynamic


def test_dynamic_on_conv_net_quantizes_nothing_and_says_so() -> None:
    model = _model("ESPCN")
    result = dynamic_quantize_torch(model.module)
    assert result.quantized_layers == []
    assert result.note == "no Linear/LSTM/GRU layers: dynamic quantization changed nothing"
    x = torch.from_numpy(sample_inputs(model.descriptor, (32, 32))[0])
    with torch.no_grad():
        assert torch.equal(result.module(x), model.module(x))


class _Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.head(self.lstm(x)[0]))


def test_dynamic_quantizes_linear_and_lstm_and_names_them() -> None:
    module = _Tagger().eval()
    result = dynamic_quantize_torch(module)
    assert sorted(result.quantized_layers) == ["head", "lstm"]
    assert "head" in result.note and "lstm" in result.note
    assert type(result.module.head).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert type(module.head) is nn.Linear  # the original is untouched
    x = torch.randn(2, 5, 8)  # a sequence model: no photo applies here
    with torch.no_grad():
        assert result.module(x).shape == module(x).shape


def test_dynamic_rejects_non_module_and_bad_dtype() -> None:
    with pytest.raises(InvalidInputError, match="torch.nn.Module"):
        dynamic_quantize_torch("espcn")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="qint8"):
        dynamic_quantize_torch(nn.Linear(2, 2), dtype=torch.quint8)


# --------------------------------------------------------------------------- static


@pytest.mark.parametrize(
    ("arch_id", "min_psnr", "batches"),
    # TransformerNet: two batches (its ~40 histogram observers make calibration ~1 s a batch here).
    [("ESPCN", 40.0, 4), ("SRVGGNetCompact", 30.0, 4), ("TransformerNet", 40.0, 2)],
)
def test_static_quantization_runs_int8_and_stays_close_to_fp32(
    arch_id: str, min_psnr: float, batches: int
) -> None:
    model = _model(arch_id)
    desc = model.descriptor
    example = sample_inputs(desc, (48, 48), 1)
    result = static_quantize_torch(
        model.module, example, _calibration(desc, 48, batches), value_range=desc.output.value_range
    )
    assert result.flow == "fx-static" and result.backend == "x86"
    # Really int8: quantize / dequantize nodes in the graph and int8 conv weights.
    counts = count_quant_nodes(result.module)
    assert counts["quantize"] >= 1 and counts["dequantize"] >= 1
    convs = [m for m in result.module.modules() if hasattr(m, "weight") and callable(m.weight)]
    assert convs and all(m.weight().dtype == torch.qint8 for m in convs)
    assert result.quantized_layers == quantized_module_names(result.module)
    # Runs on another real photo crop at another size, right shape, close to FP32.
    other = [torch.from_numpy(x) for x in sample_inputs(desc, (64, 40), 2)]
    with torch.no_grad():
        ref, got = model.module(*other), result.module(*other)
    assert got.shape == ref.shape
    assert result.quality is not None and result.quality.psnr_db > min_psnr
    assert compare(ref, got, desc.output.value_range).psnr_db > min_psnr


def test_static_calibration_is_deterministic() -> None:
    model = _model("ESPCN")
    example = sample_inputs(model.descriptor, (32, 32), 1)
    calibration = _calibration(model.descriptor, 32)
    first = static_quantize_torch(model.module, example, calibration)
    second = static_quantize_torch(model.module, example, calibration)
    x = torch.from_numpy(sample_inputs(model.descriptor, (40, 40), 2)[0])
    with torch.no_grad():
        assert torch.equal(first.module(x), second.module(x))


def test_static_rejects_bad_inputs() -> None:
    model = _model("ESPCN")
    example = sample_inputs(model.descriptor, (32, 32), 1)
    with pytest.raises(InvalidInputError, match="at least one batch"):
        static_quantize_torch(model.module, example, [])
    with pytest.raises(InvalidInputError, match="expected 1 input"):
        static_quantize_torch(model.module, example, [example * 2])
    with pytest.raises(InvalidInputError, match="backend"):
        static_quantize_torch(model.module, example, [example], backend="tensorrt")


class _ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.mean() > 0.5 else x


def test_untraceable_model_raises_engine_build_error() -> None:
    model = _model("ESPCN")
    example = sample_inputs(model.descriptor, (32, 32), 1)
    with pytest.raises(EngineBuildError, match="_ValueBranch.*tracing"):
        static_quantize_torch(_ValueBranch().eval(), example, [example])


# --------------------------------------------------------------------------- QAT -> ONNX


def test_qat_fine_tune_convert_and_export_to_onnx(tmp_path: Path) -> None:
    model = _model("ESPCN")
    desc = model.descriptor
    crops = [sample_inputs(desc, (32, 32), 2), sample_inputs(desc, (40, 40), 2)]
    prepared = prepare_qat(model.module, crops[0])
    before = {k: v.clone() for k, v in prepared.state_dict().items() if v.is_floating_point()}
    losses = qat_fine_tune(prepared, model.module, crops, steps=5, lr=1e-4)
    assert len(losses) == 5 and all(np.isfinite(losses))
    assert any(not torch.equal(before[k], v) for k, v in prepared.state_dict().items() if k in before)

    converted = convert_qat(prepared)
    assert quantized_module_names(converted)
    x = [torch.from_numpy(a) for a in sample_inputs(desc, (48, 48), 1)]
    with torch.no_grad():
        out, ref = converted(*x), model.module(*x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert compare(ref, out, desc.output.value_range).psnr_db > 35.0

    # The int8 graph exports as QDQ ONNX (int8 weights), verified by ONNX Runtime at another size.
    report = export_quantized_onnx(converted, crops[0], tmp_path / "espcn_qat.onnx", descriptor=desc)
    assert report.verified
    graph = onnx.load(report.path).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    tensors = list(graph.initializer) + [
        a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
    ]
    int8_weights = [t for t in tensors if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 4  # conv1..conv4
    session = ort.InferenceSession(report.path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x[0].numpy()})
    assert got.shape == tuple(out.shape)
    assert compare(out, got, desc.output.value_range).psnr_db > 40.0


# --------------------------------------------------------------------------- benchmark


def test_benchmark_torch_quantization_reports_size_speed_and_quality() -> None:
    model = _model("ESPCN", feat1=32, feat2=32, feat3=16)
    desc = model.descriptor
    example = sample_inputs(desc, (32, 32), 1)
    result = static_quantize_torch(model.module, example, _calibration(desc, 32))
    stats = benchmark_torch_quantization(model.module, result.module, example, num_iterations=3)
    for key in ("size_reduction_percent", "speedup", "original_ms", "quantized_ms", "psnr_db"):
        assert key in stats and np.isfinite(stats[key])
    assert stats["quantized_bytes"] < stats["original_bytes"]
    assert 0.0 < stats["size_reduction_percent"] < 100.0
    assert stats["original_ms"] > 0 and stats["quantized_ms"] > 0 and stats["speedup"] > 0
    assert stats["psnr_db"] > 30.0
    with pytest.raises(InvalidInputError, match="num_iterations"):
        benchmark_torch_quantization(model.module, result.module, example, num_iterations=0)
