"""ModelManager: the application's async entry point to registered models and their runners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .cache import ArtifactCache
from .config import ModelConfig, check_count, check_warmup_specs
from .descriptor import ModelDescriptor, ShapeRange
from .entry import ModelEntry, validate_name, validate_type
from .errors import ModelInputError, ModelManagerError
from .host_memory import keep_freed_memory
from .optim.strategies import parse_optimization
from .optimized_loader import OptimizedLoader
from .registry import ModelRegistry
from .runner_pool import PoolKey, RunnerPool
from .runners import Runner
from .samples import warmup_inputs

log = logging.getLogger(__name__)


class ModelManager:
    """Loads registered models as FP32 modules or as Runners; use as ``async with``.

    States: open after construction, closed after :meth:`aclose` (every runner it handed out is
    closed with it). Loading happens in worker threads, so the event loop keeps serving.
    """

    def __init__(self, config: ModelConfig | None = None, registry: ModelRegistry | None = None) -> None:
        self.config = config if config is not None else ModelConfig()
        self.registry = registry if registry is not None else ModelRegistry.with_builtins()
        self.cache = ArtifactCache(self.config.cache_dir, lock_timeout_s=self.config.lock_timeout_s)
        self._loader = OptimizedLoader(self.config, self.cache)
        self._pool = RunnerPool(maxsize=self.config.max_loaded_models)
        self._loading: dict[PoolKey, asyncio.Future[Runner]] = {}
        self._closed = False
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        if self.config.keep_freed_memory:
            keep_freed_memory()

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> ModelManager:
        self._check_open()
        if self.config.warmup:
            await self.warmup(self.config.warmup, self.config.warmup_concurrency)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every runner this manager handed out; the manager cannot be used afterwards."""
        self._closed = True
        for task in list(self._loading.values()):
            task.cancel()
        self._pool.close_all()
        self.cache.close()

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
        entry = await asyncio.to_thread(self.registry.register_checkpoint, model_type, name, path)
        self._forget(entry.model_type, entry.name)
        return entry

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
        entry = self.registry.register_factory(model_type, name, factory, descriptor, default=default)
        self._forget(entry.model_type, entry.name)
        return entry

    # -- loading -----------------------------------------------------------------------------
    async def load_real_model(self, model_type: str, name: str) -> nn.Module:
        """The eval-mode FP32 ``nn.Module`` with its weights, on the CPU."""
        self._check_open()
        entry = self._entry(model_type, name)
        loaded = await asyncio.to_thread(entry.load)
        return loaded.module

    async def load_optimized_model(
        self,
        model_type: str,
        name: str,
        optimization: str = "auto",
        *,
        shape_range: ShapeRange | None = None,
    ) -> Runner:
        """A ready Runner for the model under the requested strategy (see :class:`Optimization`).

        ``shape_range`` sets the input sizes the artifact must take (e.g. ``ShapeRange((1080,
        1920))`` for 1080p frames); default: ``ModelConfig.shape_ranges`` for the model type, else
        the model's own profile. It is part of the cache key.

        Runners are shared: the same (type, name, optimization, range) returns the same Runner while it
        stays in the in-memory LRU (``max_loaded_models``). An evicted runner is not closed: whoever
        holds it keeps using it, and it is released when the last holder lets go; the manager
        closes every runner still alive when it closes.
        """
        self._check_open()
        strategy = parse_optimization(optimization)
        entry = self._entry(model_type, name)
        if shape_range is not None and not isinstance(shape_range, ShapeRange):
            raise ModelInputError(f"shape_range must be a ShapeRange, got {type(shape_range).__name__}")
        shape_range = shape_range or self.config.shape_ranges.get(entry.model_type)
        key = (entry.model_type, entry.name, strategy, shape_range)
        runner = self._pool.get_open(key)
        if runner is not None:
            return runner
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._loader.load(entry, strategy, shape_range))
            self._loading[key] = task
            task.add_done_callback(lambda _t: self._loading.pop(key, None))
        runner = await asyncio.shield(task)
        if self._pool.get_open(key) is not runner:
            self._pool[key] = runner
        return runner

    async def benchmark_strategies(
        self,
        model_type: str,
        name: str,
        optimization: str = "auto",
        size: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """Every candidate of ``optimization`` built, checked against FP32 and timed with eager FP32.

        Nothing is cached or served; this is what ``auto`` would decide at ``size`` (default: the
        profile's opt shape), with each candidate's median / p90, speedup, PSNR and size on disk.
        """
        self._check_open()
        if size is not None:
            size = _check_size(size)
        entry = self._entry(model_type, name)
        return await self._loader.measure(entry, parse_optimization(optimization), size)

    async def warmup(
        self, specs: Iterable[tuple[str, str, str]], concurrency: int | None = None
    ) -> list[Runner]:
        """Build or load every (type, name, optimization) with bounded concurrency, then run each once.

        The inference uses real sample photos at the profile's opt shape, so lazy allocations and
        kernel choices happen now, not on the first real request.
        """
        specs = list(specs)
        check_warmup_specs(specs)
        limit = asyncio.Semaphore(
            self.config.warmup_concurrency if concurrency is None else check_count("concurrency", concurrency)
        )

        async def one(spec: tuple[str, str, str]) -> Runner:
            async with limit:
                runner = await self.load_optimized_model(*spec)
                await runner.infer(*warmup_inputs(runner.descriptor))
                log.info("warmed up %s/%s [%s]", spec[0], spec[1], runner.info.strategy)
                return runner

        return list(await asyncio.gather(*(one(tuple(s)) for s in specs)))  # type: ignore[arg-type]

    def unload(self, model_type: str, name: str) -> int:
        """Drop a model's runners (every optimization) from memory; returns how many were pooled.

        Runners a caller still holds keep working and are released when their last holder lets go;
        the next ``load_optimized_model`` opens the model again (from the artifact cache).
        """
        self._check_open()
        entry = self._entry(model_type, name)
        dropped = self._pool.drop(entry.model_type, entry.name)
        log.info("unloaded %s/%s (%d runners)", entry.model_type, entry.name, len(dropped))
        return len(dropped)

    # -- helpers -----------------------------------------------------------------------------
    def _entry(self, model_type: str, name: str) -> ModelEntry:
        validate_type(model_type)
        if name != "default":
            validate_name("model name", name)
        return self.registry.get(model_type, name)

    def _forget(self, model_type: str, name: str) -> None:
        """Close pooled runners of a model whose registration changed (they serve the old weights)."""
        for runner in self._pool.drop(model_type, name):
            runner.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ModelManagerError("this ModelManager is closed")


def _check_size(size: object) -> tuple[int, int]:
    """A (height, width) pair of positive integers, else ModelInputError naming what came."""
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ModelInputError(f"size must be (height, width), got {size!r}")
    height, width = size
    return check_count("size height", height), check_count("size width", width)
