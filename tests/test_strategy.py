"""The auto decision and explicit strategies as pure functions; GPU branches use described hardware.

No GPU exists here, so the CUDA / TensorRT cases describe one with a ``Hardware`` value (the
tests say so in their names); nothing else is faked.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from model_manager import Optimization, StrategyUnavailableError
from model_manager.optim.decision import CandidateResult, choose
from model_manager.optim.hardware import Hardware, probe_hardware
from model_manager.optim.planner import plan

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


def test_auto_on_described_gpu_is_the_whole_chain_tried_in_order() -> None:
    """Issue 18, defect 4: CUDA auto planned TensorRT alone, so a failed engine build was an error."""
    gpu = replace(_described_gpu(True, True), cxx_compiler="g++")
    p = plan(Optimization.AUTO, gpu, ALL | {"aoti"}, "cuda")
    assert p.candidates == ("tensorrt", "onnx", "fp16", "aoti") and p.fallback and not p.measured
    assert not p.notes


def test_auto_on_described_gpu_without_tensorrt_falls_back_with_reasons() -> None:
    p = plan(Optimization.AUTO, _described_gpu(False, True), ALL, "cuda")
    assert p.candidates == ("onnx", "fp16") and "tensorrt package is not installed" in p.notes[0]
    assert any("aoti not used" in n and "C++ compiler" in n for n in p.notes)
    p = plan(Optimization.AUTO, _described_gpu(False, False), ALL, "cuda")
    assert p.candidates == ("fp16",) and len(p.notes) == 3 and "CUDAExecutionProvider" in p.notes[1]


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


# -- the one strategy table ---------------------------------------------------------------------------
CPU_EVERYTHING = Hardware(
    cuda=False,
    cpu="test cpu",
    cpu_flags=frozenset({"avx512_bf16", "amx_bf16"}),
    cores=2,
    openvino=True,
    cxx_compiler="/usr/bin/g++",
)


def test_every_strategy_auto_can_serve_can_be_asked_for_by_name() -> None:
    """Issue 15: int8-torch, int8-static-qop and openvino-bf16 were served by auto but not nameable."""
    from model_manager.optim.strategies import BY_NAME, CPU_AUTO_ORDER, CUDA_AUTO_CHAIN, parse_optimization

    everything = set(BY_NAME)
    for name in CPU_AUTO_ORDER:
        assert parse_optimization(name.upper().replace("-", "_")) == name
        assert Optimization(name).value == name
        assert plan(name, CPU_EVERYTHING, everything, "cpu").candidates == (name,)
    gpu = Hardware(cuda=True, tensorrt=True, ort_providers=("CUDAExecutionProvider",), cxx_compiler="g++")
    for name in CUDA_AUTO_CHAIN:
        assert plan(name, gpu, everything, "cuda").candidates == (name,)


def test_the_table_is_the_only_list() -> None:
    """Optimization's members, the registry's plugins and the planner all come from the table."""
    from model_manager.optim.candidates.registry import registered
    from model_manager.optim.strategies import BY_NAME, NAMES, STRATEGIES

    assert [m.value for m in Optimization] == list(NAMES)
    assert set(registered()) <= set(BY_NAME)
    auto = plan(Optimization.AUTO, CPU_EVERYTHING, set(BY_NAME), "cpu")
    assert auto.candidates == tuple(
        s.name for s in sorted(STRATEGIES, key=lambda s: s.cpu_rank or 0) if s.cpu_rank is not None
    )


@pytest.mark.slow
async def test_strategies_that_only_auto_served_now_load_by_name(tmp_path) -> None:
    """int8-static-qop and int8-torch through the manager, by name (gate lowered: seeded weights)."""
    from model_manager import ModelConfig, ModelManager, QualityGates

    config = ModelConfig(
        cache_dir=tmp_path / "cache",
        device="cpu",
        quality=QualityGates(int8_min_psnr=20.0),
        auto_time_budget_s=0.2,
    )
    async with ModelManager(config) as m:
        for name in ("int8-static-qop", "int8-torch"):
            runner = await m.load_optimized_model("super_resolution", "default", name)
            assert runner.info.strategy == name and runner.info.precision == "int8"
        if not probe_hardware().native_bf16:
            with pytest.raises(StrategyUnavailableError, match="native BF16"):
                await m.load_optimized_model("super_resolution", "default", "openvino-bf16")


def test_onnx_runtime_on_a_described_gpu_without_its_cuda_provider_is_refused_not_served_on_the_cpu() -> None:
    """An explicit ``onnx`` on CUDA used to be served by ONNX Runtime's CPU provider, silently."""
    with pytest.raises(StrategyUnavailableError, match="needs onnxruntime-gpu's CUDAExecutionProvider"):
        plan(Optimization.ONNX, _described_gpu(False, False), ALL, "cuda")
    assert plan(Optimization.ONNX, _described_gpu(False, True), ALL, "cuda").candidates == ("onnx",)
