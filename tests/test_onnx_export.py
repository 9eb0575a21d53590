"""ONNX export: every architecture exports with dynamic batch / H / W and verifies at another size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ExportError, InvalidInputError
from model_manager.models import all_architectures
from model_manager.optim.onnx_export import (
    ONNXExportConfig,
    ONNXExporter,
    benchmark_onnx_model,
    export_interpolation_to_onnx,
    export_style_transfer_to_onnx,
    export_super_resolution_to_onnx,
)
from model_manager.optim.onnx_info import model_size_bytes, onnx_model_info

from .conftest import sample_inputs, small_config

ARCH_IDS = sorted(all_architectures())


def _model(arch_id: str):
    return all_architectures()[arch_id].create(small_config(arch_id), seed=0)


def _dummy(desc, size: int = 64) -> list[torch.Tensor]:
    s = max(size, desc.size_multiple)
    return [torch.from_numpy(x) for x in sample_inputs(desc, (s, s))]


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_every_architecture_exports_dynamic_and_verifies_elsewhere(arch_id: str, tmp_path: Path) -> None:
    lm = _model(arch_id)
    dummy = _dummy(lm.descriptor)
    report = ONNXExporter().export(lm.module, dummy, tmp_path / "m.onnx", descriptor=lm.descriptor)
    assert report.verified and report["verified"]
    assert report.max_difference is not None and report.max_difference < 1e-4
    first = report.input_names[0]
    assert report.verify_shapes[first][0] == 2  # another batch
    assert report.verify_shapes[first][2:] != list(dummy[0].shape[2:])  # another size
    info = onnx_model_info(report.path)
    assert info["inputs"][0]["shape"] == ["batch", lm.descriptor.inputs[0].channels, "height", "width"]
    assert info["opset"] == 17 and info["parameters"] > 0 and info["size_bytes"] == report.size_bytes
    assert sum(info["ops"].values()) > 0


class _BakesItsSize(torch.nn.Module):
    """Reads H and W as Python ints: the tracer records them as constants despite dynamic axes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[2]), int(x.shape[3])
        return x.reshape(x.shape[0], 3, h * w).reshape(-1, 3, h, w) * 0.5


def test_a_baked_shape_fails_verification(tmp_path: Path) -> None:
    args = (_BakesItsSize(), torch.rand(1, 3, 32, 32), tmp_path / "baked.onnx")
    with pytest.raises(ExportError, match="failed verification at .*baked as a constant"):
        ONNXExporter().export(*args)
    report = ONNXExporter(ONNXExportConfig(raise_on_mismatch=False)).export(*args)
    assert not report.verified and report.verification_error
    assert report.verify_shapes["input"] == [2, 3, 40, 48]


def test_a_static_export_is_verified_at_its_own_shape(tmp_path: Path) -> None:
    lm = _model("TransformerNet")
    report = ONNXExporter().export(
        lm.module, _dummy(lm.descriptor), tmp_path / "static.onnx", dynamic_axes={}
    )
    assert report.verified and report.verify_shapes["input"] == [1, 3, 64, 64]
    assert onnx_model_info(report.path)["inputs"][0]["shape"] == [1, 3, 64, 64]


def test_external_data_round_trips(tmp_path: Path) -> None:
    lm = _model("SRVGGNetCompact")
    config = ONNXExportConfig(external_data_threshold_bytes=0)
    report = ONNXExporter(config).export(lm.module, _dummy(lm.descriptor), tmp_path / "ext.onnx")
    assert report.external_data and report.verified
    assert report.files == ["ext.onnx", "ext.data"]
    data = tmp_path / "ext.data"
    assert data.stat().st_size > 0
    assert model_size_bytes(report.path) == (tmp_path / "ext.onnx").stat().st_size + data.stat().st_size
    # a later small export at the same path does not keep the stale weights file
    ONNXExporter().export(lm.module, _dummy(lm.descriptor), tmp_path / "ext.onnx")
    assert not data.exists()


class _Spectral(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x).abs()


def test_unexportable_model_names_the_operator(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="aten::fft_rfft2") as info:
        ONNXExporter().export(_Spectral(), torch.rand(1, 3, 16, 16), tmp_path / "s.onnx")
    assert info.value.operator == "aten::fft_rfft2"


def test_ifnet_below_opset_16_names_grid_sample(tmp_path: Path) -> None:
    lm = _model("IFNet")
    with pytest.raises(ExportError, match="grid_sampler") as info:
        ONNXExporter(ONNXExportConfig(opset=15)).export(
            lm.module, _dummy(lm.descriptor), tmp_path / "i.onnx", descriptor=lm.descriptor
        )
    assert "grid_sampler" in (info.value.operator or "")


def test_bad_arguments_give_clear_errors(tmp_path: Path) -> None:
    lm = _model("ESPCN")
    dummy = _dummy(lm.descriptor)
    with pytest.raises(InvalidInputError, match="opset must be in 9..20"):
        ONNXExportConfig(opset=21)
    with pytest.raises(InvalidInputError, match=r"dynamic_axes names \['pixels'\] that are not inputs"):
        ONNXExporter().export(lm.module, dummy, tmp_path / "a.onnx", dynamic_axes={"pixels": {0: "b"}})
    with pytest.raises(InvalidInputError, match=r"expected 1 name\(s\), one per input"):
        ONNXExporter().export(lm.module, dummy, tmp_path / "a.onnx", input_names=["a", "b"])
    with pytest.raises(InvalidInputError, match="ending in .onnx"):
        ONNXExporter().export(lm.module, dummy, tmp_path / "a.pt")
    with pytest.raises(InvalidInputError, match="does not exist"):
        onnx_model_info(tmp_path / "missing.onnx")
    with pytest.raises(InvalidInputError, match="does not exist"):
        benchmark_onnx_model(tmp_path / "missing.onnx", dummy[0].numpy())


def test_seed_api_without_a_descriptor(tmp_path: Path) -> None:
    lm = _model("ESPCN")
    report = ONNXExporter().export(
        lm.module, torch.rand(1, 3, 32, 32), tmp_path / "seed.onnx", input_names=["lr"], output_names=["sr"]
    )
    assert report.verified and report.input_names == ["lr"] and report.output_names == ["sr"]
    stats = benchmark_onnx_model(report.path, sample_inputs(lm.descriptor, (32, 32))[0], num_iterations=5)
    assert stats["iterations"] == 5
    assert (
        stats["average_time_ms"] > 0 and stats["throughput_fps"] > 0 and stats["p90_ms"] >= stats["median_ms"]
    )


def test_convenience_exports_detect_the_architecture(tmp_path: Path) -> None:
    st = _model("TransformerNet").module
    sr = _model("RRDBNet").module
    fi = _model("IFNet").module
    assert export_style_transfer_to_onnx(st, tmp_path / "st.onnx", (64, 64)).verified
    assert export_super_resolution_to_onnx(sr, tmp_path / "sr.onnx", (32, 32)).verified
    report = export_interpolation_to_onnx(fi, tmp_path / "fi.onnx", (64, 64))
    assert report.verified and report.input_names == ["img0", "img1", "timestep"]
    outputs = np.asarray(report.verify_shapes["timestep"])
    assert outputs.tolist() == [2, 1, 1, 1]
