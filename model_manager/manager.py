"""ModelManager: the application's async entry point to registered models and their runners."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ModelConfig
from .descriptor import ModelDescriptor
from .errors import ModelManagerError, StrategyUnavailableError
from .optimization import IMPLEMENTED, Optimization
from .registry import ModelEntry, ModelRegistry, validate_name, validate_type
from .runners import Runner, RunnerInfo, TorchRunner

log = logging.getLogger(__name__)


class ModelManager:
    """Loads registered models as FP32 modules or as Runners; use as ``async with``.

    States: open after construction, closed after :meth:`aclose` (every runner it handed out is
    closed with it). Loading happens in worker threads, so the event loop keeps serving.
    """

    def __init__(self, config: ModelConfig | None = None, registry: ModelRegistry | None = None) -> None:
        self.config = config if config is not None else ModelConfig()
        self.registry = registry if registry is not None else ModelRegistry.with_builtins()
        self._runners: weakref.WeakSet[Runner] = weakref.WeakSet()
        self._closed = False
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> ModelManager:
        self._check_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every runner this manager handed out; the manager cannot be used afterwards."""
        self._closed = True
        for runner in list(self._runners):
            runner.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the catalogue -----------------------------------------------------------------------
    def list_models(self, model_type: str | None = None) -> list[dict[str, Any]]:
        """Every registered model: type, name, architecture, default flag, weights, descriptor."""
        if model_type is not None:
            validate_type(model_type)
        return [e.to_dict() for e in self.registry.entries(model_type)]

    async def register_checkpoint(self, model_type: str, name: str, path: str | Path) -> ModelEntry:
        """Detect a checkpoint's architecture, load it strictly and register it (off the event loop)."""
        self._check_open()
        return await asyncio.to_thread(self.registry.register_checkpoint, model_type, name, path)

    def register_model(
        self,
        model_type: str,
        name: str,
        factory: Callable[[], nn.Module],
        descriptor: ModelDescriptor,
        *,
        default: bool = False,
    ) -> ModelEntry:
        """Register your own ``nn.Module`` factory with the descriptor that says how to call it."""
        return self.registry.register_factory(model_type, name, factory, descriptor, default=default)

    # -- loading -----------------------------------------------------------------------------
    async def load_real_model(self, model_type: str, name: str) -> nn.Module:
        """The eval-mode FP32 ``nn.Module`` with its weights, on the CPU."""
        self._check_open()
        entry = self._entry(model_type, name)
        loaded = await asyncio.to_thread(entry.load)
        return loaded.module

    async def load_optimized_model(
        self, model_type: str, name: str, optimization: str | Optimization = "auto"
    ) -> Runner:
        """A ready Runner for the model under the requested strategy (see :class:`Optimization`)."""
        self._check_open()
        strategy = Optimization.parse(optimization)
        entry = self._entry(model_type, name)
        if strategy not in IMPLEMENTED:
            raise StrategyUnavailableError(
                f"optimization {strategy.value!r} is not available in this build; "
                f"available: {sorted(s.value for s in IMPLEMENTED)}"
            )
        runner = await asyncio.to_thread(self._eager_runner, entry, strategy)
        self._runners.add(runner)
        return runner

    # -- helpers -----------------------------------------------------------------------------
    def _entry(self, model_type: str, name: str) -> ModelEntry:
        validate_type(model_type)
        if name != "default":
            validate_name("model name", name)
        return self.registry.get(model_type, name)

    def _device(self) -> torch.device:
        if self.config.device == "cuda" or (self.config.device == "auto" and torch.cuda.is_available()):
            return torch.device("cuda")
        return torch.device("cpu")

    def _eager_runner(self, entry: ModelEntry, strategy: Optimization) -> TorchRunner:
        loaded = entry.load()
        device = self._device()
        info = RunnerInfo(
            model_type=entry.model_type,
            name=entry.name,
            strategy=Optimization.NONE.value,
            backend="torch",
            device=str(device),
            precision="fp32",
            architecture=loaded.architecture,
        )
        if strategy is Optimization.AUTO:
            reason = "auto: no optimized backend is available in this build; serving eager FP32"
            info.notes.append(reason)
            info.decision = {"chosen": "none", "reason": reason}
            log.warning("%s/%s: %s", entry.model_type, entry.name, reason)
        return TorchRunner(loaded.module, loaded.descriptor, info, device=device)

    def _check_open(self) -> None:
        if self._closed:
            raise ModelManagerError("this ModelManager is closed")
