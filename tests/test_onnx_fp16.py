"""FP16 ONNX: real export -> real conversion -> real float16 evaluation against the FP32 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model_manager import InvalidInputError, ModelConfig, ModelManager
from model_manager.checkpoint import describe_module
from model_manager.models import all_architectures
from model_manager.optim.onnx_export import ONNXExportConfig, ONNXExporter
from model_manager.optim.onnx_fp16 import Fp16Settings, fp16_onnx_from_onnx, verify_fp16_onnx

from .conftest import sample_inputs, small_config

ARCH_IDS = sorted(all_architectures())
FP16_GATE_DB = 40.0
FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _export(module, desc, path: Path, config: ONNXExportConfig | None = None) -> Path:
    """FP32 ONNX at 64x64 (IFNet: 64x128). Its verification against PyTorch is test_onnx_export's."""
    size = (64, 128) if desc.size_multiple >= 64 else desc.fit_size(64, 64)
    dummy = [torch.from_numpy(x) for x in sample_inputs(desc, size)]
    ONNXExporter(config or ONNXExportConfig(verify=False)).export(module, dummy, path, descriptor=desc)
    return path


def _other_size(desc) -> tuple[int, int]:
    """Not the export size, small enough for onnx.reference's float16 run."""
    return (64, 64) if desc.size_multiple >= 64 else desc.fit_size(40, 48)


def _types(path: Path) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    return types | {t.name: t.data_type for t in g.initializer}


@pytest.fixture(scope="module")
def fp32_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    folder = tmp_path_factory.mktemp("fp32")
    models = {}
    for arch_id in ARCH_IDS:
        lm = all_architectures()[arch_id].create(small_config(arch_id), seed=0)
        models[arch_id] = (_export(lm.module, lm.descriptor, folder / f"{arch_id}.onnx"), lm.descriptor)
    return models


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_every_architecture_converts_and_keeps_quality(arch_id: str, fp32_models, tmp_path: Path) -> None:
    src, desc = fp32_models[arch_id]
    dst = tmp_path / "m16.onnx"
    assert fp16_onnx_from_onnx(src, dst) == ["m16.onnx"]
    onnx.checker.check_model(str(dst), full_check=True)
    model = onnx.load(str(dst))
    g = model.graph
    assert [v.type.tensor_type.elem_type for v in [*g.input, *g.output]] == [FLOAT] * (len(g.input) + 1)
    kept_users = {i for n in g.node if n.op_type == "InstanceNormalization" for i in n.input[1:]}
    floats = [t for t in g.initializer if t.data_type in (FLOAT, FLOAT16)]
    assert floats and all((t.data_type == FLOAT) == (t.name in kept_users) for t in floats)
    assert any(n.op_type == "Conv" and _types(dst)[n.input[1]] == FLOAT16 for n in g.node)

    x = sample_inputs(desc, _other_size(desc))
    report = verify_fp16_onnx(src, dst, x, desc.output.value_range)
    ort = verify_fp16_onnx(src, dst, x, desc.output.value_range, evaluator="onnxruntime")
    print(f"{arch_id}: FP16 vs FP32 {report.psnr_db:.1f} dB (onnx.reference), {ort.psnr_db:.1f} dB (ORT CPU)")
    assert report.passes(FP16_GATE_DB) and ort.passes(FP16_GATE_DB)
    assert 0 < report.max_abs_error < 0.05  # float16 really computed: not bit-identical to FP32


def test_instance_norm_runs_in_float32_between_casts(fp32_models, tmp_path: Path) -> None:
    src, _ = fp32_models["TransformerNet"]
    dst = tmp_path / "tn16.onnx"
    fp16_onnx_from_onnx(src, dst)
    g, types = onnx.load(str(dst)).graph, _types(dst)
    producer = {o: n for n in g.node for o in n.output}
    users = {i: n for n in g.node for i in n.input}
    norms = [n for n in g.node if n.op_type == "InstanceNormalization"]
    assert len(norms) == 9
    for n in norms:
        assert all(types[i] == FLOAT for i in n.input) and types[n.output[0]] == FLOAT
        cast_in, cast_out = producer[n.input[0]], users[n.output[0]]
        assert cast_in.op_type == "Cast" and types[cast_in.input[0]] == FLOAT16
        assert cast_out.op_type == "Cast" and types[cast_out.output[0]] == FLOAT16
    # without the default, the statistics run in float16 too
    fp16_onnx_from_onnx(src, dst, Fp16Settings(keep_fp32_op_types=()))
    assert all(t.data_type == FLOAT16 for t in onnx.load(str(dst)).graph.initializer if t.data_type != 7)


def test_keep_fp32_nodes_keeps_a_named_conv(fp32_models, tmp_path: Path) -> None:
    src, desc = fp32_models["ESPCN"]
    convs = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    last = convs[-1]
    dst = tmp_path / "espcn16.onnx"
    fp16_onnx_from_onnx(src, dst, Fp16Settings(keep_fp32_nodes=(last.name,)))
    weights = {t.name: t.data_type for t in onnx.load(str(dst)).graph.initializer}
    assert [weights[i] for i in last.input[1:]] == [FLOAT, FLOAT]
    assert all(weights[i] == FLOAT16 for n in convs[:-1] for i in n.input[1:])
    report = verify_fp16_onnx(src, dst, sample_inputs(desc, (40, 48)))
    assert report.passes(FP16_GATE_DB)


def test_external_data_stays_external(tmp_path: Path) -> None:
    lm = all_architectures()["SRVGGNetCompact"].create(small_config("SRVGGNetCompact"), seed=0)
    config = ONNXExportConfig(external_data_threshold_bytes=0, verify=False)
    src = _export(lm.module, lm.descriptor, tmp_path / "ext.onnx", config)
    assert fp16_onnx_from_onnx(src, tmp_path / "ext16.onnx") == ["ext16.onnx", "ext16.data"]
    fp32_bytes, fp16_bytes = (tmp_path / "ext.data").stat().st_size, (tmp_path / "ext16.data").stat().st_size
    assert fp16_bytes < 0.6 * fp32_bytes
    x = sample_inputs(lm.descriptor, (40, 48))
    assert verify_fp16_onnx(src, tmp_path / "ext16.onnx", x).passes(FP16_GATE_DB)


def test_bad_sources_give_clear_errors(fp32_models, tmp_path: Path) -> None:
    src, desc = fp32_models["ESPCN"]
    with pytest.raises(
        InvalidInputError, match="expected an FP32 ONNX file, but .*missing.onnx.* does not exist"
    ):
        fp16_onnx_from_onnx(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    half = tmp_path / "half.onnx"
    fp16_onnx_from_onnx(src, half)
    with pytest.raises(InvalidInputError, match=r"expected an FP32 model .*got .*: 16-bit"):
        fp16_onnx_from_onnx(half, tmp_path / "again.onnx")
    model = onnx.load(str(src))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.save(model, str(tmp_path / "u8.onnx"))
    with pytest.raises(InvalidInputError, match="expected an FP32 model .*got input: UINT8"):
        fp16_onnx_from_onnx(tmp_path / "u8.onnx", tmp_path / "out.onnx")
    with pytest.raises(InvalidInputError, match="ending in .onnx, got 'out.trt'"):
        fp16_onnx_from_onnx(src, tmp_path / "out.trt")
    with pytest.raises(InvalidInputError, match=r"expected 1 array\(s\) for \['input'\], got 2"):
        verify_fp16_onnx(src, half, sample_inputs(desc, (40, 48)) * 2)
    with pytest.raises(InvalidInputError, match="tuple of strings"):
        Fp16Settings(keep_fp32_nodes="/conv4/Conv")  # type: ignore[arg-type]


DEFAULT_MODELS = [
    ("super_resolution", "espcn-x2"),
    ("style_transfer", "sketch"),
    ("interpolation", "ifnet-s"),
]


async def test_trained_default_models_keep_quality_in_fp16(tmp_path: Path) -> None:
    async with ModelManager(ModelConfig(cache_dir=tmp_path / "cache", device="cpu")) as manager:
        modules = {key: await manager.load_real_model(*key) for key in DEFAULT_MODELS}
    results = {}
    for (model_type, name), module in modules.items():
        desc = describe_module(module, model_type)
        src = _export(module, desc, tmp_path / f"{name}.onnx")
        dst = tmp_path / f"{name}16.onnx"
        fp16_onnx_from_onnx(src, dst)
        report = verify_fp16_onnx(src, dst, sample_inputs(desc, _other_size(desc)), desc.output.value_range)
        results[name] = report.psnr_db
        assert np.isfinite(report.max_abs_error) and report.max_abs_error > 0
    print("trained defaults, FP16 vs FP32 (onnx.reference):", {k: f"{v:.1f} dB" for k, v in results.items()})
    assert all(v >= FP16_GATE_DB for v in results.values()), results
