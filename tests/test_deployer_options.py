"""GPU and ONNX Runtime controls a deployer expects (issue 18): the CUDA device index, and options
passed through to ONNX Runtime. The sessions here are real (CPU provider); the GPU cases use a
described GPU, said in the test names."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_manager import ModelConfig, ModelInputError, ModelManager, OnnxRuntimeOptions
from model_manager.cache import ArtifactCache
from model_manager.optim.hardware import Hardware
from model_manager.optimized_loader import OptimizedLoader
from model_manager.runners.ort_session import choose_providers


def test_the_device_policy_takes_a_cuda_index() -> None:
    assert ModelConfig(device="cuda:1").cuda_index == 1
    assert ModelConfig(device="cuda").cuda_index == 0 and ModelConfig(device="cpu").cuda_index == 0
    for bad in ("cuda:", "cuda:x", "gpu", "cuda:1:2", 1):
        with pytest.raises(ModelInputError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            ModelConfig(device=bad)  # type: ignore[arg-type]


def test_a_cuda_index_reaches_the_runners_and_the_build_with_a_described_gpu(tmp_path: Path) -> None:
    """The plan stays "cuda" (the table's device); runners open on cuda:N and the build runs there."""
    hw = Hardware(
        cuda=True, gpu_name="NVIDIA H200", capability=(9, 0), ort_providers=("CUDAExecutionProvider",)
    )
    loader = OptimizedLoader(ModelConfig(cache_dir=tmp_path, device="cuda:1"), ArtifactCache(tmp_path), hw)
    the_plan = loader.plan_for("fp16")
    assert the_plan.device == "cuda" and loader._torch_device(the_plan) == "cuda:1"
    from model_manager.registry import ModelRegistry

    loaded = ModelRegistry.with_builtins().default("super_resolution").load()
    settings = loader._settings(loaded, the_plan, "ab" * 32)
    assert settings.device == "cuda" and settings.cuda_index == 1 and settings.torch_device == "cuda:1"


def test_provider_options_are_passed_by_provider_name() -> None:
    options = {"CPUExecutionProvider": {"arena_extend_strategy": "kSameAsRequested"}}
    assert choose_providers("cpu", options) == [
        ("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})
    ]
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(
        ModelInputError, match="expected ONNX Runtime execution provider names, got CUDAProvider"
    ):
        choose_providers("cpu", {"CUDAProvider": {"device_id": 1}})


async def test_session_options_reach_the_served_session_and_join_the_key(config: ModelConfig) -> None:
    passthrough = OnnxRuntimeOptions(
        session_options={"enable_mem_pattern": False, "execution_mode": "ORT_SEQUENTIAL"},
        config_entries={"session.intra_op.allow_spinning": "0"},
    )
    async with ModelManager(config.replace(onnxruntime=passthrough)) as m:
        tuned = await m.load_optimized_model("super_resolution", "default", "onnx")
        opts = tuned.session.get_session_options()
        assert opts.enable_mem_pattern is False
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    async with ModelManager(config) as m:
        plain = await m.load_optimized_model("super_resolution", "default", "onnx")
        assert plain.session.get_session_options().enable_mem_pattern is True
        assert plain.info.cache_key != tuned.info.cache_key


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"session_options": {"enable_turbo": True}},
            "expected a SessionOptions attribute .*got 'enable_turbo'",
        ),
        (
            {"session_options": {"execution_mode": "FAST"}},
            "expected one of ORT_SEQUENTIAL, ORT_PARALLEL, got 'FAST'",
        ),
        ({"provider_options": {"NoSuchExecutionProvider": {}}}, "got NoSuchExecutionProvider"),
    ],
)
async def test_a_passthrough_onnx_runtime_refuses_is_named_before_any_build(
    config: ModelConfig, options: dict, match: str
) -> None:
    async with ModelManager(config.replace(onnxruntime=OnnxRuntimeOptions(**options))) as m:
        with pytest.raises(ModelInputError, match=match):
            await m.load_optimized_model("super_resolution", "default", "onnx")
    assert not any((config.cache_dir).rglob("manifest.json"))  # nothing was built


def test_passthrough_values_must_be_json_scalars() -> None:
    with pytest.raises(
        ModelInputError, match="session_options: expected a name and a str / int / float / bool"
    ):
        OnnxRuntimeOptions(session_options={"enable_mem_pattern": [False]})  # type: ignore[dict-item]
    with pytest.raises(ModelInputError, match="config_entries: expected a name and a str value"):
        OnnxRuntimeOptions(config_entries={"session.intra_op.allow_spinning": 0})  # type: ignore[dict-item]
