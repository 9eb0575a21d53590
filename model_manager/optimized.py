"""From (entry, requested optimization) to a ready Runner: plan, key, cached build, open.

The manager delegates here. The plan comes from ``optim.strategy``; the key from ``cache.key``;
the build runs through the ArtifactCache (once per key across processes) in a child process;
the Runner is opened from the published files with ``info`` filled from the manifest.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from .cache import ArtifactCache, BuildOutput, CacheEntry, CacheKey, make_key
from .checkpoint import weights_hash
from .config import ModelConfig
from .models import LoadedModel
from .optim.build import build_plan
from .optim.build_process import build_in_subprocess
from .optim.candidates import CANDIDATES, BuildSettings, OpenRequest, available_candidates
from .optim.hardware import Hardware, probe_hardware
from .optim.onnx_export import DEFAULT_OPSET
from .optim.strategy import BASELINE, Plan, plan
from .optimization import Optimization
from .registry import ModelEntry
from .runners import Runner, RunnerInfo, TorchRunner

log = logging.getLogger(__name__)

EXPORT_SETTINGS = {"exporter": "torchscript", "opset": DEFAULT_OPSET, "optimize": "none"}


class OptimizedLoader:
    """Builds (once) and opens optimized runners for registry entries."""

    def __init__(self, config: ModelConfig, cache: ArtifactCache, hardware: Hardware | None = None) -> None:
        self.config = config
        self.cache = cache
        self._hardware = hardware

    @property
    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = probe_hardware()
        return self._hardware

    def device(self) -> str:
        """The device runners use under the config's policy."""
        if self.config.device == "cuda" or (self.config.device == "auto" and self.hardware.cuda):
            return "cuda"
        return "cpu"

    def plan_for(self, requested: Optimization) -> Plan:
        device = self.device()
        available = available_candidates(device)
        if requested is Optimization.AUTO:
            available -= set(self.config.auto_exclude)
        the_plan = plan(requested, self.hardware, available, device)
        for note in the_plan.notes:  # every fallback is logged, and recorded in runner.info.notes
            log.info("%s on %s: %s", requested.value, device, note)
        return the_plan

    async def load(self, entry: ModelEntry, requested: Optimization) -> Runner:
        """Plan, then either run eager directly or go through the cache."""
        the_plan = self.plan_for(requested)
        loaded = await asyncio.to_thread(entry.load)
        if the_plan.candidates == (BASELINE,) and not the_plan.measured:
            return self._eager(entry, loaded, the_plan)
        key = await asyncio.to_thread(self._key, entry, loaded, the_plan)
        cached = await self.cache.get_or_build(key, self._builder(entry, loaded, the_plan))
        return await asyncio.to_thread(self._open, entry, loaded, the_plan, cached)  # off the event loop

    async def measure(
        self, entry: ModelEntry, requested: Optimization, size: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        """Build, check and time every candidate of the plan (and eager FP32) without caching.

        What ``auto`` decides, with every candidate's numbers; for ``model-manager bench``.
        """
        import tempfile

        the_plan = self.plan_for(requested)
        loaded = await asyncio.to_thread(entry.load)
        settings = self._settings(loaded, the_plan)
        if size is not None:
            settings = replace(settings, opt_size=loaded.descriptor.fit_size(*size))
        with tempfile.TemporaryDirectory(prefix="model_manager_bench_") as tmp:
            out = await asyncio.to_thread(
                build_plan, loaded.module, loaded.descriptor, the_plan, Path(tmp), settings
            )
        return {
            "model": f"{entry.model_type}/{entry.name}",
            "optimization": the_plan.requested,
            "input": out.benchmark["input"],
            "decision": out.decision,
            "machine": out.benchmark["machine"],
        }

    def _eager(self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan) -> Runner:
        info = RunnerInfo(
            entry.model_type,
            entry.name,
            BASELINE,
            "torch",
            the_plan.device,
            "fp32",
            architecture=loaded.architecture,
            notes=list(the_plan.notes),
        )
        return TorchRunner(loaded.module, loaded.descriptor, info, device=the_plan.device)

    def _key(self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan) -> CacheKey:
        hw = self.hardware
        device = hw.gpu_key() if the_plan.device == "cuda" else {"kind": "cpu"}
        compiled_for_cpu = any(CANDIDATES[c].backend == "openvino" for c in the_plan.candidates)
        if the_plan.measured or compiled_for_cpu:  # the decision (or a compiled blob) depends on this CPU
            device = hw.cpu_key()
        settings = self._settings(loaded, the_plan)
        return make_key(
            entry.model_type,
            entry.name,
            weights_hash(loaded.module.state_dict()),
            the_plan.requested,
            architecture=loaded.architecture,
            hyperparameters=loaded.hyperparameters,
            precision="auto" if the_plan.measured else CANDIDATES[the_plan.candidates[0]].precision,
            profile=loaded.descriptor.profile.to_dict() if loaded.descriptor.profile else None,
            export=EXPORT_SETTINGS,
            device=device,
            extra={
                "candidates": list(the_plan.candidates),
                "gates": settings.gates,
                "opt": [list(settings.opt_size), settings.opt_batch],
            },
        )

    def _settings(self, loaded: LoadedModel, the_plan: Plan) -> BuildSettings:
        batch, height, width = loaded.descriptor.opt_shape()
        return BuildSettings(
            device=the_plan.device,
            gates=self.config.quality.by_precision(),
            time_budget_s=self.config.auto_time_budget_s,
            num_threads=self.config.num_threads,
            opt_size=(height, width),
            opt_batch=batch,
        )

    def _builder(self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan) -> Any:
        settings = self._settings(loaded, the_plan)
        label = f"{entry.model_type}/{entry.name} [{the_plan.requested}]"

        async def build(folder: Path) -> BuildOutput:
            if self.config.build_in_subprocess and entry.weights.kind != "factory":
                return await build_in_subprocess(
                    loaded.module,
                    loaded.architecture,
                    dict(loaded.hyperparameters),
                    the_plan,
                    settings,
                    folder,
                    label,
                )
            out = await asyncio.to_thread(
                build_plan, loaded.module, loaded.descriptor, the_plan, folder, settings
            )
            if entry.weights.kind == "factory":
                out.notes.append(
                    "built in-process: a user factory model cannot be rebuilt in a build process"
                )
            return out

        return build

    def _open(self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan, cached: CacheEntry) -> Runner:
        m = cached.manifest
        chosen = str(m.decision.get("chosen") or the_plan.candidates[0])
        cand = CANDIDATES[chosen]
        info = RunnerInfo(
            model_type=entry.model_type,
            name=entry.name,
            strategy=chosen,
            backend=cand.backend,
            device=the_plan.device,
            precision=cand.precision,
            architecture=loaded.architecture,
            artifact_path=str(cached.path),
            cache_key=m.key_digest,
            cache_hit=cached.hit,
            build_seconds=m.build_seconds,
            quality=dict(m.quality),
            speedup=m.benchmark.get("speedup"),
            decision={"requested": the_plan.requested, **m.decision},
            notes=[*m.notes],
        )
        req = OpenRequest(
            cached.path,
            [f.name for f in m.files],
            loaded.module,
            loaded.descriptor,
            info,
            the_plan.device,
            self.config.num_threads,
        )
        runner = cand.open(req)
        log.info(
            "%s/%s: serving %s (%s) from %s%s",
            entry.model_type,
            entry.name,
            chosen,
            cand.backend,
            cached.path,
            " [cache hit]" if cached.hit else "",
        )
        return runner
