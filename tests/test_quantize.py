"""ModelQuantizer on real ONNX Runtime / PyTorch quantization, checked against FP32 on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_manager import InvalidInputError, QualityGateError, StrategyUnavailableError
from model_manager.models import all_architectures
from model_manager.optim.calibration import sample_calibration_set
from model_manager.optim.quantize import (
    ModelQuantizer,
    QuantizationConfig,
    QuantizationType,
    quantize_interpolation_model,
    quantize_style_transfer_model,
    quantize_super_resolution_model,
)
from model_manager.optim.quantize_onnx import is_symmetric_per_channel_qdq, op_histogram

from .conftest import sample_inputs, small_config

CONV_NETS = ["ESPCN", "SRVGGNetCompact", "RRDBNet", "TransformerNet"]
STATIC = QuantizationConfig(QuantizationType.STATIC, input_size=(48, 48), calibration_samples=4)


def _model(arch_id: str):
    return all_architectures()[arch_id].create(small_config(arch_id), seed=0)


@pytest.mark.parametrize("arch_id", CONV_NETS)
@pytest.mark.parametrize(
    "config",
    [
        STATIC,
        QuantizationConfig(QuantizationType.DYNAMIC, input_size=(48, 48)),
        QuantizationConfig(QuantizationType.BF16, backend="torch", input_size=(48, 48)),
    ],
    ids=["static-ort", "dynamic-ort", "bf16-torch"],
)
def test_each_strategy_gives_a_runner_that_passes_its_gate(arch_id: str, config: QuantizationConfig) -> None:
    lm = _model(arch_id)
    q = ModelQuantizer(config).quantize(lm.module)
    assert q.passed, q.notes
    for key, report in q.quality.items():
        assert report["psnr_db"] >= q.min_psnr_db and 0 < report["ssim"] <= 1.0
        with q.runner(key) as runner:
            out = runner(*sample_inputs(lm.descriptor, (40, 56)))
            assert out.shape[-2:] == (40 * lm.descriptor.scale, 56 * lm.descriptor.scale)
            assert np.isfinite(out).all()


def test_static_writes_both_formats_from_one_calibration_and_qdq_is_symmetric() -> None:
    q = ModelQuantizer(STATIC).quantize(_model("ESPCN").module)
    assert set(q.files) == {"qdq", "qoperator"}
    assert is_symmetric_per_channel_qdq(q.files["qdq"])
    assert op_histogram(q.files["qoperator"])["QLinearConv"] == 4
    assert op_histogram(q.files["qdq"])["QuantizeLinear"] > 0
    ranges = json.loads((q.files["qdq"].parent / "calibration.json").read_text())
    assert ranges  # the saved ranges both formats were written from


def test_static_calibration_is_deterministic(tmp_path: Path) -> None:
    lm = _model("SRVGGNetCompact")
    data = sample_calibration_set(lm.descriptor, (48, 48), 4)
    outs = []
    for run in ("a", "b"):
        config = QuantizationConfig(QuantizationType.STATIC, input_size=(48, 48), work_dir=tmp_path / run)
        q = ModelQuantizer(config).quantize(lm.module, calibration_data=data)
        with q.runner("qdq") as r:
            outs.append(r(*sample_inputs(lm.descriptor, (32, 32))))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert (tmp_path / "a" / "calibration.json").read_text() == (
        tmp_path / "b" / "calibration.json"
    ).read_text()


def test_below_the_gate_is_reported_not_served() -> None:
    config = QuantizationConfig(
        QuantizationType.STATIC, input_size=(48, 48), calibration_samples=2, min_psnr_db=200.0
    )
    q = ModelQuantizer(config).quantize(_model("ESPCN").module)
    assert not q.passed and any("not served" in n for n in q.notes)
    with pytest.raises(QualityGateError, match="not served"):
        q.runner("qdq")
    q.runner("qdq", force=True).close()


def test_torch_dynamic_on_a_conv_net_says_it_did_nothing() -> None:
    config = QuantizationConfig(QuantizationType.DYNAMIC, backend="torch", input_size=(32, 32))
    q = ModelQuantizer(config).quantize(_model("ESPCN").module)
    assert "changed nothing" in q.notes[0]
    assert q.quality["int8"]["psnr_db"] == 150.0  # honestly identical to FP32


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    lm = _model("TransformerNet")
    quantizer = ModelQuantizer(STATIC)
    q = quantizer.quantize(lm.module)
    saved = quantizer.save_quantized_model(q, tmp_path / "saved")
    assert sorted(p.suffix for p in saved.iterdir()) == [".json", ".onnx", ".onnx"]
    loaded = quantizer.load_quantized_model(saved)
    x = sample_inputs(lm.descriptor, (32, 32))
    with q.runner("qoperator") as a, loaded.runner("qoperator") as b:
        np.testing.assert_array_equal(a(*x), b(*x))
    bf = ModelQuantizer(QuantizationConfig(QuantizationType.BF16, backend="torch", input_size=(32, 32)))
    qb = bf.quantize(lm.module)
    saved_b = bf.save_quantized_model(qb, tmp_path / "bf16")
    assert (saved_b / "weights.safetensors").is_file() and not list(saved_b.glob("*.p*"))
    with bf.load_quantized_model(saved_b).runner() as r:
        assert r(*x).shape == (1, 3, 32, 32)


def test_bad_calibration_data_and_config_are_clear_errors() -> None:
    lm = _model("ESPCN")
    quantizer = ModelQuantizer(STATIC)
    with pytest.raises(InvalidInputError, match="calibration data is empty"):
        quantizer.quantize(lm.module, calibration_data=[])
    wrong = [[np.zeros((1, 1, 32, 32), np.float32)]]
    with pytest.raises(InvalidInputError, match=r"calibration item 0, input 'input': expected 3 channels"):
        quantizer.quantize(lm.module, calibration_data=wrong)
    with pytest.raises(InvalidInputError, match="expected 1 arrays"):
        quantizer.quantize(lm.module, calibration_data=[[wrong[0][0], wrong[0][0]]])
    with pytest.raises(InvalidInputError, match="formats must be"):
        QuantizationConfig(formats=("int4",))  # type: ignore[arg-type]
    with pytest.raises(StrategyUnavailableError, match="fp16 needs a CUDA device"):
        ModelQuantizer(QuantizationConfig(QuantizationType.FP16, backend="torch")).quantize(lm.module)
    with pytest.raises(StrategyUnavailableError, match="QAT needs training"):
        ModelQuantizer(QuantizationConfig(QuantizationType.QAT, backend="torch")).quantize(lm.module)


def test_benchmark_quantization_reports_the_seed_keys() -> None:
    lm = _model("SRVGGNetCompact")
    quantizer = ModelQuantizer(STATIC)
    q = quantizer.quantize(lm.module)
    stats = quantizer.benchmark_quantization(
        lm.module, q, sample_inputs(lm.descriptor, (48, 48)), num_iterations=3
    )
    assert {"size_reduction_percent", "speedup", "original_ms", "quantized_ms", "quality_psnr_db"} <= set(
        stats
    )
    assert stats["speedup"] > 0 and stats["quantized_bytes"] > 0


def test_convenience_functions_detect_their_family() -> None:
    assert (
        quantize_super_resolution_model(_model("ESPCN").module, STATIC).descriptor.model_type
        == "super_resolution"
    )
    assert (
        quantize_style_transfer_model(_model("TransformerNet").module, STATIC).descriptor.architecture
        == "TransformerNet"
    )
    q = quantize_interpolation_model(
        _model("IFNet").module,
        QuantizationConfig(QuantizationType.STATIC, input_size=(64, 64), calibration_samples=2),
    )
    assert set(q.quality) == {"qdq", "qoperator"}  # measured and reported whatever the outcome
