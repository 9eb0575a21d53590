"""Builder crash isolation: a build that dies natively is an error, not the end of the application.

Promises: a model whose ONNX export calls ``os.abort()`` (tests/reliability/abort_arch.py, a plugin
architecture the build process imports by name) gives the caller an ``EngineBuildError`` naming
SIGABRT; nothing is published and no temporary folder is left; while that build dies, another
model keeps answering on the same event loop, and afterwards the manager still loads and serves.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from model_manager import ModelConfig, ModelManager
from model_manager.cache.store import TMP_PREFIX
from model_manager.errors import EngineBuildError
from model_manager.samples import sample_batch


@pytest.fixture
def abort_arch() -> Iterator[ModuleType]:
    """The plugin module, registered for this test only (other tests export every architecture)."""
    from model_manager.models.base import ARCHITECTURES

    module = importlib.import_module("tests.reliability.abort_arch")
    ARCHITECTURES.setdefault(module.ARCH_ID, module.AbortOnExportArch())
    yield module
    ARCHITECTURES.pop(module.ARCH_ID, None)


def aborting_checkpoint(folder: Path, abort_arch: ModuleType) -> Path:
    path = folder / "aborter.safetensors"
    save_file({k: v.contiguous() for k, v in abort_arch.AbortOnExport().state_dict().items()}, str(path))
    return path


async def keep_serving(runner, x: np.ndarray, stop: asyncio.Event) -> int:
    """Call ``runner`` until ``stop`` is set; every answer must have the right shape."""
    calls = 0
    while not stop.is_set():
        y = await runner.infer(x)
        assert y.shape == (1, 3, x.shape[2] * 2, x.shape[3] * 2)
        calls += 1
        await asyncio.sleep(0)
    return calls


@pytest.mark.slow
async def test_a_builder_that_aborts_is_an_engine_build_error_and_other_models_keep_serving(
    tmp_path: Path, abort_arch: ModuleType
) -> None:
    """os.abort() in the export: EngineBuildError (SIGABRT); the other model answered meanwhile."""
    config = ModelConfig(cache_dir=tmp_path / "cache", device="cpu", num_threads=1)
    async with ModelManager(config) as manager:
        entry = await manager.register_checkpoint(
            "super_resolution", "aborter", aborting_checkpoint(tmp_path, abort_arch)
        )
        assert entry.architecture == abort_arch.ARCH_ID
        eager = await manager.load_optimized_model("super_resolution", "aborter", optimization="none")
        (x,) = sample_batch(eager.descriptor, (32, 32), 1)
        assert eager(x).shape == x.shape  # the model itself runs; only its export aborts

        serving = await manager.load_optimized_model("super_resolution", "espcn-x2", optimization="none")
        stop = asyncio.Event()
        background = asyncio.create_task(keep_serving(serving, x, stop))
        with pytest.raises(EngineBuildError, match="died with SIGABRT"):
            await manager.load_optimized_model("super_resolution", "aborter", optimization="onnx")
        stop.set()
        assert await background > 0, "the other model did not answer while the build was dying"

        cache = config.cache_dir
        assert not list(cache.rglob("manifest.json")), "a build that died published something"
        assert not list(cache.rglob(f"{TMP_PREFIX}*")), "a build that died left its temporary folder"

        onnx = await manager.load_optimized_model("super_resolution", "espcn-x2", optimization="onnx")
        with torch.no_grad():
            expected = serving(x)
        assert np.abs(onnx(x) - expected).max() < 1e-3
