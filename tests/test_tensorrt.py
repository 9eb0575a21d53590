"""TensorRT path: what runs without a GPU, and the GPU tests (marked ``gpu``) for a machine that has one.

On this CPU machine: profile derivation and validation, the engine sidecar and when an engine is
current, the config checks, the CUDA fallback chain's recorded and logged reasons (with a
*described* GPU: the tests say so), and that nothing breaks or registers without TensorRT. FP16
ONNX conversion quality is in test_onnx_fp16.py. The ``gpu`` tests build and run real engines;
they are skipped where CUDA or TensorRT is absent (scripts/gpu_check.sh runs them).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ModelConfig, Optimization
from model_manager.cache import ArtifactCache
from model_manager.errors import BackendUnavailableError, InvalidInputError, StrategyUnavailableError
from model_manager.models import all_architectures
from model_manager.optim.candidates.registry import registered
from model_manager.optim.hardware import Hardware
from model_manager.optim.intermediates import onnx_from_torch
from model_manager.optim.settings import BuildSettings
from model_manager.optim.trt_engine import TensorRTConfig, engine_is_current, make_sidecar
from model_manager.optim.trt_optimizer import TensorRTOptimizer
from model_manager.optim.trt_profiles import (
    InputProfile,
    clamp_opt,
    opt_at_size,
    profiles_from_descriptor,
    profiles_from_shapes,
)
from model_manager.optimized_loader import OptimizedLoader

from .conftest import small_config

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
gpu = pytest.mark.gpu
needs_gpu_and_trt = pytest.mark.skipif(
    not (torch.cuda.is_available() and HAS_TRT), reason="needs a CUDA GPU and the tensorrt package"
)
H200 = {"tensorrt": "11.4.0.106", "gpu": "NVIDIA H200", "compute_capability": [9, 0]}


@pytest.mark.parametrize("arch_id", ["ESPCN", "TransformerNet", "IFNet"])
def test_profiles_come_from_the_descriptor_with_opt_inside_min_max(arch_id: str) -> None:
    """One profile per input, in the descriptor's order; an opt outside min..max is clamped and said."""
    descriptor = all_architectures()[arch_id].create().descriptor
    profiles, notes = profiles_from_descriptor(descriptor)
    assert [p.name for p in profiles] == [s.name for s in descriptor.inputs] and notes == []
    first = descriptor.inputs[0].name
    huge = (1, 3, 100_000, 100_000)
    clamped, notes = profiles_from_descriptor(descriptor, {first: huge})
    assert clamped[0].opt[-2:] == clamped[0].max[-2:] and len(notes) == 1 and "clamped" in notes[0]


def test_the_opt_shape_follows_the_build_size_for_image_inputs_only() -> None:
    """IFNet: both frames get the build's H / W; the timestep keeps its (N, 1, 1, 1) shape."""
    descriptor = all_architectures()["IFNet"].create().descriptor
    opt = opt_at_size(descriptor, (96, 128))
    assert opt["img0"][-2:] == opt["img1"][-2:] == (96, 128) and opt["timestep"][1:] == (1, 1, 1)
    profiles, _notes = profiles_from_descriptor(descriptor, opt)
    assert all(p.min <= p.opt <= p.max for p in profiles)


def test_a_profile_says_what_was_expected_and_what_came() -> None:
    """min <= opt <= max per dimension and one rank, or an InvalidInputError quoting the shapes."""
    with pytest.raises(InvalidInputError, match=r"1 <= min <= opt <= max.*opt \(1, 3, 8, 8\)"):
        InputProfile("input", (1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 32, 32))
    with pytest.raises(InvalidInputError, match="one rank"):
        InputProfile("input", (1, 3, 16), (1, 3, 16, 16), (1, 3, 32, 32))
    p, note = clamp_opt("input", (1, 3, 16, 16), (1, 3, 64, 8), (1, 3, 32, 32))
    assert p.opt == (1, 3, 32, 16) and note and "(1, 3, 64, 8)" in note
    assert p.accepts((1, 3, 20, 30)) and not p.accepts((1, 3, 40, 30)) and not p.accepts((1, 3, 20))


def test_input_shapes_in_the_seed_form() -> None:
    """``{name: (min, opt, max)}`` or ``{name: shape}`` (fixed); anything else is named."""
    fixed, ranged = profiles_from_shapes(
        {"a": (1, 3, 64, 64), "b": ((1, 3, 16, 16), (1, 3, 64, 64), (2, 3, 128, 128))}
    )
    assert fixed.min == fixed.max == (1, 3, 64, 64) and ranged.max == (2, 3, 128, 128)
    with pytest.raises(InvalidInputError, match="expected \\(min, opt, max\\)"):
        profiles_from_shapes({"a": ((1, 3, 8, 8), (1, 3, 8, 8))})
    with pytest.raises(InvalidInputError, match="at least one input"):
        profiles_from_shapes({})


def test_the_sidecar_records_what_the_engine_is_bound_to(tmp_path: Path) -> None:
    """TensorRT version, GPU, capability, profiles, precision, the source ONNX hash and the config."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx, only hashed")
    profile = InputProfile("input", (1, 3, 8, 8), (1, 3, 64, 64), (4, 3, 256, 256))
    sidecar = make_sidecar(onnx, [profile], TensorRTConfig("fp16"), H200)
    assert sidecar["tensorrt"] == "11.4.0.106" and sidecar["compute_capability"] == [9, 0]
    assert sidecar["profiles"] == {
        "input": {"min": [1, 3, 8, 8], "opt": [1, 3, 64, 64], "max": [4, 3, 256, 256]}
    }
    assert sidecar["precision"] == "fp16" and len(sidecar["source_onnx_sha256"]) == 64
    assert sidecar["config"]["timing_cache"] is None  # where the timing cache lives is not part of it


def test_an_engine_for_another_gpu_or_tensorrt_is_not_current() -> None:
    """Each differing rule is a reason: the TensorRT version, then the GPU (name and capability)."""
    sidecar = {**H200, "config": {"hardware_compatibility": "none"}}
    assert engine_is_current(sidecar, H200) == (True, [])
    ok, reasons = engine_is_current(sidecar, {**H200, "tensorrt": "10.13.0", "gpu": "NVIDIA L4"})
    assert not ok and len(reasons) == 2 and any("10.13.0" in r for r in reasons)
    same_cc_other_name = {**H200, "gpu": "NVIDIA H100 80GB HBM3"}
    assert not engine_is_current(sidecar, same_cc_other_name)[0]  # without compatibility: this GPU only


def test_hardware_compatible_engines_follow_the_compute_capability_rule() -> None:
    """Issue 18, defect 5: only the GPU name was relaxed: an ampere_plus engine built on an H200 was
    refused on an L4 (8.9) and a same_compute_capability one on an H100 (same 9.0)."""
    ampere_plus = {**H200, "config": {"hardware_compatibility": "ampere_plus"}}
    assert engine_is_current(ampere_plus, {**H200, "gpu": "NVIDIA L4", "compute_capability": [8, 9]}) == (
        True,
        [],
    )
    ok, reasons = engine_is_current(ampere_plus, {**H200, "gpu": "Tesla T4", "compute_capability": [7, 5]})
    assert not ok and "compute capability >= 8.0" in reasons[0]
    same_cc = {**H200, "config": {"hardware_compatibility": "same_compute_capability"}}
    assert engine_is_current(same_cc, {**H200, "gpu": "NVIDIA H100 80GB HBM3"}) == (True, [])
    ok, reasons = engine_is_current(same_cc, {**H200, "gpu": "NVIDIA L4", "compute_capability": [8, 9]})
    assert not ok and "compute_capability [9, 0]" in reasons[0]


def test_version_compatible_engines_run_on_later_releases_of_the_same_major() -> None:
    """Issue 18, defect 5: the exact TensorRT version was demanded even of version-compatible engines."""
    portable = {**H200, "config": {"version_compatible": True}}
    assert engine_is_current(portable, {**H200, "tensorrt": "11.6.1.4"}) == (True, [])
    for older_or_other_major in ("11.3.0.1", "12.0.0.1", "10.13.0.35"):
        ok, reasons = engine_is_current(portable, {**H200, "tensorrt": older_or_other_major})
        assert not ok and "version-compatible" in reasons[0] and older_or_other_major in reasons[0]
    assert not engine_is_current({**H200, "config": {}}, {**H200, "tensorrt": "11.6.1.4"})[0]


def test_a_managed_build_shares_one_timing_cache_per_gpu_and_version_outside_the_entry(
    tmp_path: Path,
) -> None:
    """Issue 18, defect 1: the timing cache lived in the entry's throwaway build folder."""
    from model_manager.optim.candidates.trt import engine_config

    settings = BuildSettings(device="cuda", intermediates_root=str(tmp_path))
    config = engine_config(settings, "fp16", H200)
    assert config.timing_cache == tmp_path / ".tensorrt-timing" / "nvidia-h200-sm90-trt11.4.0.106.cache"
    other_gpu = engine_config(settings, "int8", {**H200, "gpu": "NVIDIA L4", "compute_capability": [8, 9]})
    assert other_gpu.timing_cache is not None and other_gpu.timing_cache.parent == config.timing_cache.parent
    assert other_gpu.timing_cache != config.timing_cache
    assert (
        engine_config(settings, "fp16", {**H200, "tensorrt": "11.5.0.1"}).timing_cache != config.timing_cache
    )
    assert config.key_fields() == TensorRTConfig("fp16").key_fields()  # where it lives is not in the key


class _SimulatedTimingCache:
    """Stands in for trt.ITimingCache (no TensorRT here): a set of tactic timings, serialised as JSON."""

    def __init__(self, entries: set[str]) -> None:
        self.entries = entries

    def combine(self, other: _SimulatedTimingCache, ignore_mismatch: bool) -> bool:
        self.entries |= other.entries
        return True

    def serialize(self) -> bytes:
        return json.dumps(sorted(self.entries)).encode()


class _SimulatedBuilderConfig:
    """Stands in for trt.IBuilderConfig's timing-cache calls; ``refuse`` makes set_timing_cache fail."""

    def __init__(self, ours: set[str], refuse: bool = False) -> None:
        self.ours, self.refuse, self.used = _SimulatedTimingCache(ours), refuse, None

    def create_timing_cache(self, data: bytes) -> _SimulatedTimingCache:
        return _SimulatedTimingCache(set(json.loads(data)) if data else set())

    def set_timing_cache(self, cache: _SimulatedTimingCache, ignore_mismatch: bool) -> bool:
        if self.refuse and cache.entries:
            return False
        self.used = cache
        return True

    def get_timing_cache(self) -> _SimulatedTimingCache:
        return self.ours


def test_builds_only_add_to_the_shared_timing_cache_with_simulated_tensorrt_caches(tmp_path: Path) -> None:
    """Two builds merge into the shared file (its folder made on first use); a refused cache starts empty."""
    from model_manager.optim.trt_engine import merge_timing_cache, use_timing_cache

    path = tmp_path / ".tensorrt-timing" / "gpu.cache"
    merge_timing_cache(_SimulatedBuilderConfig({"conv1:tactic3"}), path)  # type: ignore[arg-type]
    merge_timing_cache(_SimulatedBuilderConfig({"conv2:tactic7"}), path)  # type: ignore[arg-type]
    assert json.loads(path.read_bytes()) == ["conv1:tactic3", "conv2:tactic7"]
    second = _SimulatedBuilderConfig(set())
    use_timing_cache(second, path)  # type: ignore[arg-type]
    assert second.used is not None and second.used.entries == {"conv1:tactic3", "conv2:tactic7"}
    refusing = _SimulatedBuilderConfig(set(), refuse=True)
    use_timing_cache(refusing, path)  # type: ignore[arg-type]
    assert refusing.used is not None and refusing.used.entries == set()  # started empty, not unchecked


def test_tensorrt_progress_reaches_the_build_from_its_threads_with_a_simulated_tensorrt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18, defect 5: TensorRT calls its progress monitor from its own threads, where the build's
    context variable is unset, so every phase was lost. The tensorrt module here is simulated."""
    import sys
    import threading
    import types

    from model_manager.optim.trt_engine import make_progress_monitor
    from model_manager.progress import reporting

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(IProgressMonitor=IProgressMonitor))
    seen: list[str] = []
    with reporting(seen.append):
        monitor = make_progress_monitor()
    worker = threading.Thread(target=monitor.phase_start, args=("Building engine", "", 12))
    worker.start()
    worker.join()
    assert seen == ["Building engine (12 steps)"]


def test_tensorrt_build_options_join_the_key_and_cuda_graphs_do_not(tmp_path: Path) -> None:
    """Issue 18, defect 5: TensorRTConfig said its fields were in the cache key; none were."""
    from model_manager import TensorRTOptions
    from model_manager.optim.planner import Plan
    from model_manager.registry import ModelRegistry

    entry = ModelRegistry.with_builtins().default("super_resolution")
    loaded = entry.load()
    hw = Hardware(cuda=True, gpu_name="NVIDIA H200", capability=(9, 0), tensorrt=True)
    engine_plan = Plan("tensorrt", ("tensorrt",), "cuda", False)

    def digest(plan: Plan, **options: object) -> str:
        config = ModelConfig(cache_dir=tmp_path, device="cuda", tensorrt=TensorRTOptions(**options))  # type: ignore[arg-type]
        loader = OptimizedLoader(config, ArtifactCache(tmp_path), hw)
        return loader._key(entry, loaded, plan, "ab" * 32).digest

    base = digest(engine_plan)
    assert digest(engine_plan, optimization_level=5) != base
    assert digest(engine_plan, workspace_bytes=1 << 30) != base
    assert digest(engine_plan, hardware_compatibility="ampere_plus") != base
    assert digest(engine_plan, cuda_graph=True) == base
    no_engine = Plan("fp16", ("fp16",), "cuda", False)
    assert digest(no_engine, optimization_level=5) == digest(no_engine)


def test_the_config_refuses_what_tensorrt_would() -> None:
    """Precision, optimization level, workspace and hardware compatibility are checked on creation."""
    for bad, match in [
        ({"precision": "int4"}, "precision"),
        ({"optimization_level": 7}, "optimization_level"),
        ({"workspace_bytes": 10}, "workspace_bytes"),
        ({"hardware_compatibility": "turing"}, "hardware_compatibility"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            TensorRTConfig(**bad)  # type: ignore[arg-type]


def test_cuda_fallback_reasons_are_recorded_and_logged_with_a_described_gpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No GPU here: a described H200 without TensorRT or onnxruntime-gpu plans PyTorch FP16, and says why."""
    hw = Hardware(cuda=True, gpu_name="NVIDIA H200", capability=(9, 0), tensorrt=False)
    loader = OptimizedLoader(ModelConfig(cache_dir=tmp_path, device="cuda"), ArtifactCache(tmp_path), hw)
    with caplog.at_level(logging.INFO, logger="model_manager.optimized_loader"):
        the_plan = loader.plan_for(Optimization.AUTO)
    assert the_plan.candidates[0] == "fp16" and the_plan.fallback
    assert any("TensorRT not used" in n for n in the_plan.notes)
    assert any("CUDAExecutionProvider" in n for n in the_plan.notes)
    assert "TensorRT not used" in caplog.text and "CUDAExecutionProvider" in caplog.text


@pytest.mark.skipif(HAS_TRT, reason="checks the machine without tensorrt")
def test_without_tensorrt_nothing_registers_and_the_errors_name_the_extra(tmp_path: Path) -> None:
    """No TensorRT candidates; importing it through the library names the extra; plans say why."""
    from model_manager.optim.planner import plan
    from model_manager.runners.trt_session import import_tensorrt

    assert not {"tensorrt", "tensorrt-int8"} & set(registered())
    with pytest.raises(BackendUnavailableError, match=r"model_manager\[tensorrt\]"):
        import_tensorrt()
    with pytest.raises(StrategyUnavailableError, match="CUDA GPU"):
        plan(Optimization.TENSORRT, Hardware(cuda=False), set(registered()), "cpu")
    with pytest.raises(InvalidInputError, match="does not exist"):
        TensorRTOptimizer().optimize_from_onnx(
            tmp_path / "missing.onnx", tmp_path / "m.engine", {"x": (1, 3, 8, 8)}
        )


@pytest.mark.skipif(HAS_TRT, reason="checks the machine without tensorrt")
def test_the_convenience_functions_export_then_stop_at_the_missing_extra(tmp_path: Path) -> None:
    """Real export and FP16 conversion run; the engine build raises BackendUnavailableError, nothing written."""
    from model_manager.optim.trt_optimizer import optimize_super_resolution_tensorrt

    module = all_architectures()["ESPCN"].create().module
    with pytest.raises(BackendUnavailableError, match=r"model_manager\[tensorrt\]"):
        optimize_super_resolution_tensorrt(module, tmp_path / "sr.engine", opt_size=(64, 64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(HAS_TRT, reason="checks the machine without tensorrt")
@pytest.mark.parametrize(
    ("precision", "made", "not_made"),
    [
        ("fp32", "fp32.onnx", "fp16.onnx"),
        ("fp16", "fp16.onnx", "int8.qdq.onnx"),
        ("int8", "int8.qdq.onnx", "fp16.onnx"),
    ],
)
def test_the_convenience_functions_build_from_the_onnx_their_config_names(
    tmp_path: Path, precision: str, made: str, not_made: str
) -> None:
    """Issue 15: the helpers built their own TensorRTConfig (precision="fp32" silently built FP16).

    The graph's steps are watched on the progress channel: the ONNX the config's precision calls
    for is made, the others are not, then the engine build stops at the missing extra."""
    from model_manager.optim.trt_optimizer import optimize_style_transfer_tensorrt
    from model_manager.progress import subscribe

    module = all_architectures()["TransformerNet"].create(small_config("TransformerNet")).module
    seen: list[str] = []
    unsubscribe = subscribe(lambda e: seen.append(e.step.split(":")[0]) if not e.detail else None)
    try:
        with pytest.raises(BackendUnavailableError):
            optimize_style_transfer_tensorrt(
                module, tmp_path / "st.engine", TensorRTConfig(precision), opt_size=(32, 32)
            )
    finally:
        unsubscribe()
    assert made in seen and not_made not in seen and seen[-1] == "tensorrt"


# -- on a GPU with TensorRT ----------------------------------------------------------------------


def _espcn_engine(tmp_path: Path, precision: str = "fp16") -> tuple[object, Path]:
    from model_manager.optim.onnx_fp16 import fp16_onnx_from_onnx
    from model_manager.optim.trt_engine import engine_from_onnx

    loaded = all_architectures()["ESPCN"].create()
    onnx_from_torch(loaded.module, loaded.descriptor, tmp_path, BuildSettings(opt_size=(64, 64)))
    fp16_onnx_from_onnx(tmp_path / "model.onnx", tmp_path / "model.fp16.onnx")
    engine_from_onnx(
        tmp_path / "model.fp16.onnx", loaded.descriptor, tmp_path, TensorRTConfig(precision), (64, 64)
    )  # type: ignore[arg-type]
    return loaded, tmp_path / "model.engine"


@gpu
@needs_gpu_and_trt
def test_an_fp16_engine_runs_behind_the_runner_contract(tmp_path: Path) -> None:
    """numpy in -> numpy out; CUDA tensor in stays on the device; >= 40 dB vs FP32; profile errors named."""
    from model_manager.optim.quality import compare
    from model_manager.runners import RunnerInfo
    from model_manager.runners.trt_runner import TrtRunner
    from model_manager.samples import sample_batch

    loaded, engine = _espcn_engine(tmp_path)
    info = RunnerInfo("super_resolution", "espcn", "tensorrt", "tensorrt", "cuda", "fp16")
    runner = TrtRunner(engine, loaded.descriptor, info)  # type: ignore[attr-defined]
    (x,) = sample_batch(loaded.descriptor, (48, 80))  # type: ignore[attr-defined]
    out = runner(x)
    with torch.no_grad():
        ref = loaded.module(torch.from_numpy(x)).numpy()  # type: ignore[attr-defined]
    assert isinstance(out, np.ndarray) and compare(ref, out, (0.0, 1.0)).psnr_db >= 40.0
    on_device = runner(torch.from_numpy(x).cuda())
    assert on_device.is_cuda and torch.allclose(on_device.cpu(), torch.from_numpy(out), atol=1e-3)
    with pytest.raises(InvalidInputError, match="outside the engine's profile"):
        runner(np.zeros((8, 3, 64, 64), np.float32))
    graphed = TrtRunner(engine, loaded.descriptor, info, cuda_graph=True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(graphed(x), out, atol=1e-3)


@gpu
@needs_gpu_and_trt
def test_engines_load_when_current_and_time_with_cuda_events(tmp_path: Path) -> None:
    """load_engine deserializes a current engine; benchmark_engine reports median and p90."""
    _loaded, engine = _espcn_engine(tmp_path)
    optimizer = TensorRTOptimizer()
    assert optimizer.load_engine(engine) is not None
    stats = optimizer.benchmark_engine(engine, np.random.rand(1, 3, 64, 64).astype(np.float32), 20)
    assert stats["median_ms"] > 0 and stats["p90_ms"] >= stats["median_ms"]
    assert (tmp_path / "timing.cache").stat().st_size > 0
