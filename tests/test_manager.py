"""ModelManager: catalogue, loading real modules, runners, registration, names, lifecycle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import (
    CheckpointError,
    InvalidNameError,
    ModelConfig,
    ModelManager,
    ModelManagerError,
    Optimization,
    RunnerClosedError,
    StrategyUnavailableError,
    TorchRunner,
    UnknownModelError,
    UnknownStrategyError,
    WeightsUnavailableError,
)
from model_manager.models import all_architectures

from .conftest import sample_inputs, small_config


async def test_list_models_shows_every_type_with_a_default_and_descriptors(config: ModelConfig) -> None:
    async with ModelManager(config) as manager:
        models = manager.list_models()
    types = {m["model_type"] for m in models}
    assert types == {"style_transfer", "super_resolution", "interpolation"}
    for t in types:
        assert sum(m["default"] for m in models if m["model_type"] == t) == 1
    names = {(m["model_type"], m["name"]) for m in models}
    for expected in [
        ("style_transfer", "candy"),
        ("super_resolution", "realesr-general-x4v3"),
        ("super_resolution", "RealESRGAN_x2plus"),
        ("interpolation", "rife-4.26-heavy"),
        ("super_resolution", "espcn-x2"),
    ]:
        assert expected in names
    x2 = next(m for m in models if m["name"] == "RealESRGAN_x2plus")
    assert x2["descriptor"]["scale"] == 2 and x2["descriptor"]["size_multiple"] == 2
    assert x2["descriptor"]["inputs"][0]["shape"] == ["batch", 3, "height", "width"]


async def test_load_real_model_is_eval_fp32_with_weights(config: ModelConfig) -> None:
    async with ModelManager(config) as manager:
        module = await manager.load_real_model("super_resolution", "default")
    assert not module.training
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert type(module).__name__ == "ESPCN"


async def test_none_runner_matches_the_module(config: ModelConfig) -> None:
    async with ModelManager(config) as manager:
        module = await manager.load_real_model("style_transfer", "default")
        runner = await manager.load_optimized_model("style_transfer", "default", optimization="none")
        assert isinstance(runner, TorchRunner)
        assert runner.info.strategy == "none" and runner.info.backend == "torch"
        x = sample_inputs(runner.descriptor, (64, 64))[0]
        with torch.inference_mode():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(await runner.infer(x), expected, rtol=0, atol=1e-4)
    assert runner.closed  # the manager closes what it handed out


async def test_strategy_names(config: ModelConfig) -> None:
    assert Optimization.parse("INT8_dynamic") is Optimization.INT8_DYNAMIC
    async with ModelManager(config) as manager:
        with pytest.raises(UnknownStrategyError, match="valid: auto, none, fp16") as info:
            await manager.load_optimized_model("super_resolution", "default", "turbo")
        assert isinstance(info.value, LookupError)
        with pytest.raises(StrategyUnavailableError, match="tensorrt needs a CUDA GPU"):
            await manager.load_optimized_model("super_resolution", "default", "tensorrt")


async def test_published_model_needs_its_file_then_loads_it(config: ModelConfig, tmp_path: Path) -> None:
    arch = all_architectures()["TransformerNet"]
    ref = arch.create(seed=3)  # the published configuration
    state = dict(ref.module.state_dict())
    state["in1.running_mean"] = torch.zeros(32)  # as the pre-0.4 candy.pth carries
    state["in1.running_var"] = torch.ones(32)
    torch.save(state, tmp_path / "candy.pth")
    async with ModelManager(config) as manager:
        with pytest.raises(WeightsUnavailableError, match=r"register_checkpoint\('style_transfer', 'candy'"):
            await manager.load_real_model("style_transfer", "candy")
        entry = await manager.register_checkpoint("style_transfer", "candy", tmp_path / "candy.pth")
        assert entry.weights.kind == "file"
        runner = await manager.load_optimized_model("style_transfer", "candy", "none")
        x = sample_inputs(runner.descriptor, (32, 32))[0]
        with torch.inference_mode():
            np.testing.assert_array_equal(runner(x), ref.module(torch.from_numpy(x)).numpy())


async def test_published_name_refuses_a_different_model(config: ModelConfig, tmp_path: Path) -> None:
    small = all_architectures()["SRVGGNetCompact"].create(small_config("SRVGGNetCompact"))
    torch.save({"params_ema": small.module.state_dict()}, tmp_path / "x.pth")
    async with ModelManager(config) as manager:
        with pytest.raises(CheckpointError, match="realesr-general-x4v3 expects SRVGGNetCompact"):
            await manager.register_checkpoint("super_resolution", "realesr-general-x4v3", tmp_path / "x.pth")
        entry = await manager.register_checkpoint("super_resolution", "my-compact", tmp_path / "x.pth")
        assert entry.hyperparameters["num_conv"] == 4
        assert any(m["name"] == "my-compact" for m in manager.list_models("super_resolution"))
        with pytest.raises(CheckpointError, match="matches no known architecture of style_transfer"):
            await manager.register_checkpoint("style_transfer", "wrong-type", tmp_path / "x.pth")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65, "default", "a\\b"])
async def test_unsafe_names_are_rejected(config: ModelConfig, tmp_path: Path, name: str) -> None:
    ref = all_architectures()["ESPCN"].create(small_config("ESPCN"))
    torch.save(ref.module.state_dict(), tmp_path / "e.pth")
    async with ModelManager(config) as manager:
        with pytest.raises(InvalidNameError):
            await manager.register_checkpoint("super_resolution", name, tmp_path / "e.pth")


async def test_unknown_type_and_name(config: ModelConfig) -> None:
    async with ModelManager(config) as manager:
        with pytest.raises(UnknownModelError, match="expected one of"):
            await manager.load_real_model("colorization", "default")
        with pytest.raises(UnknownModelError, match=r"registered: .*espcn-x2"):
            await manager.load_real_model("super_resolution", "nope")


async def test_user_factory_with_descriptor(config: ModelConfig) -> None:
    arch = all_architectures()["ESPCN"]
    hp = small_config("ESPCN")
    async with ModelManager(config) as manager:

        @manager.registry.register_model("super_resolution", "mine", arch.descriptor(hp))
        def make() -> torch.nn.Module:
            return arch.create(hp, seed=5).module

        runner = await manager.load_optimized_model("super_resolution", "mine", "none")
        out = runner(sample_inputs(runner.descriptor, (16, 16))[0])
    assert out.shape == (1, 3, 32, 32)


async def test_closed_manager_refuses_and_closes_its_runners(config: ModelConfig) -> None:
    manager = ModelManager(config)
    runner = await manager.load_optimized_model("super_resolution", "default", "none")
    await manager.aclose()
    with pytest.raises(RunnerClosedError):
        runner(sample_inputs(runner.descriptor, (16, 16))[0])
    with pytest.raises(ModelManagerError, match="closed"):
        await manager.load_real_model("super_resolution", "default")
