"""The auto decision and explicit strategies as pure functions; GPU branches use described hardware.

No GPU exists here, so the CUDA / TensorRT cases describe one with a ``Hardware`` value (the
tests say so in their names); nothing else is faked.
"""

from __future__ import annotations

import pytest

from model_manager import Optimization, StrategyUnavailableError
from model_manager.optim.hardware import Hardware, probe_hardware
from model_manager.optim.strategy import CandidateResult, choose, plan

CPU = Hardware(cuda=False, cpu="test cpu", cpu_flags=frozenset({"avx512f"}), cores=2)
CPU_BF16 = Hardware(cuda=False, cpu="test cpu", cpu_flags=frozenset({"avx512_bf16", "amx_bf16"}), cores=2)
ALL = {"none", "onnx", "fp16", "bf16", "int8-dynamic", "int8-static", "tensorrt"}


def _described_gpu(tensorrt: bool, cuda_ep: bool) -> Hardware:
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if cuda_ep else ("CPUExecutionProvider",)
    return Hardware(
        cuda=True, gpu_name="NVIDIA H200", capability=(9, 0), tensorrt=tensorrt, ort_providers=providers
    )


def test_auto_on_a_cpu_measures_every_registered_candidate() -> None:
    p = plan(Optimization.AUTO, CPU, {"none", "onnx"}, "cpu")
    assert p.measured and p.candidates == ("onnx", "none")


def test_auto_skips_bf16_on_a_cpu_without_native_bf16() -> None:
    p = plan(Optimization.AUTO, CPU, ALL, "cpu")
    assert "bf16" not in p.candidates and any("no native BF16" in n for n in p.notes)
    assert "bf16" in plan(Optimization.AUTO, CPU_BF16, ALL, "cpu").candidates


def test_auto_on_described_gpu_prefers_tensorrt() -> None:
    p = plan(Optimization.AUTO, _described_gpu(True, True), ALL, "cuda")
    assert p.candidates == ("tensorrt",) and not p.notes


def test_auto_on_described_gpu_without_tensorrt_falls_back_with_reasons() -> None:
    p = plan(Optimization.AUTO, _described_gpu(False, True), ALL, "cuda")
    assert p.candidates == ("onnx",) and "tensorrt package is not installed" in p.notes[0]
    p = plan(Optimization.AUTO, _described_gpu(False, False), ALL, "cuda")
    assert p.candidates == ("fp16",) and len(p.notes) == 2 and "CUDAExecutionProvider" in p.notes[1]


def test_explicit_strategies_say_why_they_cannot_run() -> None:
    with pytest.raises(StrategyUnavailableError, match="fp16 needs a CUDA GPU"):
        plan(Optimization.FP16, CPU, ALL, "cpu")
    with pytest.raises(StrategyUnavailableError, match="needs the tensorrt package"):
        plan(Optimization.TENSORRT, _described_gpu(False, True), ALL, "cuda")
    with pytest.raises(StrategyUnavailableError, match="needs a CPU with native BF16"):
        plan(Optimization.BF16, CPU, ALL, "cpu")
    assert plan(Optimization.BF16, CPU_BF16, ALL, "cpu").candidates == ("bf16",)
    with pytest.raises(StrategyUnavailableError, match="'int8-dynamic' is not available"):
        plan(Optimization.QUANTIZE, CPU, {"none", "onnx"}, "cpu")
    q = plan(Optimization.QUANTIZE, _described_gpu(False, False), ALL, "cuda")
    assert q.candidates == ("fp16",) and "quantize means fp16 on cuda" in q.notes[0]


def _r(name: str, ms: float | None, passed: bool = True, error: str | None = None) -> CandidateResult:
    return CandidateResult(name, "b", "fp32", median_ms=ms, psnr_db=60.0, passed=passed, error=error)


def test_choose_serves_the_fastest_that_passes() -> None:
    d = choose([_r("int8-static", 10.0, passed=False), _r("onnx", 20.0), _r("none", 40.0)])
    assert d.chosen == "onnx" and "2.00x eager" in d.reason and "int8-static" in d.reason
    speedups = {c["name"]: c["speedup"] for c in d.candidates}
    assert speedups == {"int8-static": 4.0, "onnx": 2.0, "none": 1.0}


def test_choose_falls_back_to_eager_when_nothing_passes() -> None:
    d = choose([_r("onnx", None, passed=False, error="ExportError: x"), _r("none", 40.0, passed=False)])
    assert d.chosen == "none" and "no candidate passed" in d.reason


def test_probe_reads_this_machine() -> None:
    import torch

    hw = probe_hardware()
    assert hw.cuda == torch.cuda.is_available() and hw.cores >= 1
    assert "CPUExecutionProvider" in hw.ort_providers and hw.cpu
