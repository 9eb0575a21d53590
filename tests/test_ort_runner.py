"""OrtRunner slots into the Runner contract: same outputs as TorchRunner, same validation, same kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import BackendError, InvalidInputError, RunnerClosedError, RunnerInfo
from model_manager.models import all_architectures
from model_manager.optim.onnx_export import ONNXExportConfig, ONNXExporter
from model_manager.runners import OrtRunner, TorchRunner

from .conftest import sample_inputs, small_config

CASES = [
    ("TransformerNet", (66, 71)),
    ("ESPCN", (40, 52)),
    ("SRVGGNetCompact", (33, 47)),
    ("RRDBNet", (24, 40)),
    ("IFNet", (70, 100)),
    ("IFNet-heavy", (128, 64)),
]


def _pair(arch_id: str, tmp_path: Path) -> tuple[TorchRunner, OrtRunner]:
    lm = all_architectures()[arch_id].create(small_config(arch_id), seed=0)
    d = lm.descriptor
    s = max(64, d.size_multiple)
    dummy = [torch.from_numpy(x) for x in sample_inputs(d, (s, s))]
    report = ONNXExporter().export(lm.module, dummy, tmp_path / f"{arch_id}.onnx", descriptor=d)
    info = RunnerInfo(d.model_type, arch_id, "onnx", "onnxruntime", "cpu", "fp32")
    torch_info = RunnerInfo(d.model_type, arch_id, "none", "torch", "cpu", "fp32")
    return TorchRunner(lm.module, d, torch_info), OrtRunner(report.path, d, info, num_threads=2)


@pytest.mark.parametrize(("arch_id", "size"), CASES)
def test_ort_matches_torch_for_numpy_and_torch_inputs(
    arch_id: str, size: tuple[int, int], tmp_path: Path
) -> None:
    eager, ort = _pair(arch_id, tmp_path)
    inputs = sample_inputs(eager.descriptor, size, batch=2)
    expected = eager(*inputs)
    got_np = ort(*inputs)
    got_t = ort(*[torch.from_numpy(x) for x in inputs])
    assert isinstance(got_np, np.ndarray) and isinstance(got_t, torch.Tensor)
    assert (
        got_np.shape
        == expected.shape
        == (2, 3, size[0] * eager.descriptor.scale, size[1] * eager.descriptor.scale)
    )
    hi = eager.descriptor.output.value_range[1]
    np.testing.assert_allclose(got_np, expected, atol=1e-4 * hi, rtol=0)
    np.testing.assert_array_equal(got_t.numpy(), got_np)
    assert ort.info.artifact_path and ort.info.backend == "onnxruntime"


def test_validation_is_the_same_as_torch(tmp_path: Path) -> None:
    eager, ort = _pair("ESPCN", tmp_path)
    bad = sample_inputs(eager.descriptor, (16, 16))[0].astype(np.float64)
    for runner in (eager, ort):
        with pytest.raises(InvalidInputError, match="expected dtype float32, got numpy float64"):
            runner(bad)


async def test_async_infer_and_close(tmp_path: Path) -> None:
    _, ort = _pair("ESPCN", tmp_path)
    x = sample_inputs(ort.descriptor, (16, 16))[0]
    out = await ort.infer(x)
    assert out.shape == (1, 3, 32, 32)
    ort.close()
    with pytest.raises(RunnerClosedError):
        await ort.infer(x)


def test_graph_whose_inputs_differ_from_the_descriptor_is_refused(tmp_path: Path) -> None:
    lm = all_architectures()["ESPCN"].create(small_config("ESPCN"))
    report = ONNXExporter().export(
        lm.module, torch.rand(1, 3, 16, 16), tmp_path / "e.onnx", input_names=["lr"]
    )
    info = RunnerInfo("super_resolution", "e", "onnx", "onnxruntime", "cpu", "fp32")
    with pytest.raises(InvalidInputError, match=r"expected graph inputs \['input'\].*got \['lr'\]"):
        OrtRunner(report.path, lm.descriptor, info)


def test_onnxruntime_failures_become_backend_errors(tmp_path: Path) -> None:
    lm = all_architectures()["ESPCN"].create(small_config("ESPCN"))
    config = ONNXExportConfig(dynamic_spatial=False)  # a graph fixed at 16x16
    report = ONNXExporter(config).export(
        lm.module, torch.rand(1, 3, 16, 16), tmp_path / "f.onnx", descriptor=lm.descriptor
    )
    info = RunnerInfo("super_resolution", "f", "onnx", "onnxruntime", "cpu", "fp32")
    runner = OrtRunner(report.path, lm.descriptor, info)
    assert runner(sample_inputs(lm.descriptor, (16, 16))[0]).shape == (1, 3, 32, 32)
    with pytest.raises(BackendError, match="onnxruntime failed to run") as caught:
        runner(sample_inputs(lm.descriptor, (24, 24))[0])
    assert type(caught.value.__cause__).__module__.startswith("onnxruntime")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError, match="failed to load broken.onnx"):
        OrtRunner(tmp_path / "broken.onnx", lm.descriptor, info)
