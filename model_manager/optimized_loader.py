"""From (entry, requested optimization) to a ready Runner: plan, key, cached build, open.

The manager delegates here. The plan comes from ``optim.planner`` (reading the strategy table);
the key from ``cache.key``; the build runs through the ArtifactCache (once per key across
processes) in a child process, its steps published on the progress channel; the Runner is opened
from the published files with ``info`` filled from the manifest. ``measure`` runs the same build
into a temporary folder for ``model-manager bench``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from .cache import ArtifactCache, BuildOutput, CacheEntry, CacheKey, make_key
from .checkpoint import weights_hash
from .config import ModelConfig
from .descriptor import ShapeRange
from .devices import on_device
from .entry import ModelEntry
from .host_memory import POLICY
from .models import LoadedModel
from .optim.build_plan import build_plan
from .optim.build_process import build_in_subprocess
from .optim.candidates.base import OpenRequest
from .optim.candidates.registry import available_candidates, get_candidate
from .optim.hardware import Hardware, probe_hardware
from .optim.intermediates import EXPORTER
from .optim.method import BUILD_METHOD
from .optim.planner import Plan, plan
from .optim.settings import DEFAULT_OPSET, BuildSettings
from .optim.strategies import AUTO, BASELINE, strategy
from .progress import publish
from .runners import Runner, RunnerInfo, TorchRunner
from .runners.ort_session import check_options

log = logging.getLogger(__name__)

EXPORT_SETTINGS = {"exporter": EXPORTER, "opset": DEFAULT_OPSET, "optimize": "none"}


class OptimizedLoader:
    """Builds (once) and opens optimized runners for registry entries."""

    def __init__(self, config: ModelConfig, cache: ArtifactCache, hardware: Hardware | None = None) -> None:
        self.config = config
        self.cache = cache
        self._hardware = hardware

    @property
    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = probe_hardware(self.config.cuda_index)
        return self._hardware

    def device(self) -> str:
        """The device runners use under the config's policy."""
        if self.config.device.startswith("cuda") or (self.config.device == "auto" and self.hardware.cuda):
            return "cuda"
        return "cpu"

    def plan_for(self, requested: str) -> Plan:
        device = self.device()
        available = available_candidates(device)
        if requested == AUTO:
            available -= set(self.config.auto_exclude)
            available -= {n for n in available if strategy(n).auto_opt_in} - set(self.config.auto_include)
        the_plan = plan(requested, self.hardware, available, device)
        for note in the_plan.notes:  # every fallback is logged, and recorded in runner.info.notes
            log.info("%s on %s: %s", requested, device, note)
        return the_plan

    async def load(self, entry: ModelEntry, requested: str, shape_range: ShapeRange | None = None) -> Runner:
        """Plan, then either run eager directly or go through the cache (``shape_range``: the
        input sizes the artifact must take, replacing the model's profile and so in the key)."""
        the_plan = self.plan_for(requested)
        if self.config.onnxruntime.to_dict():
            check_options(self.config.onnxruntime.to_dict(), self._torch_device(the_plan))
        loaded = await asyncio.to_thread(entry.load)
        if shape_range is not None:
            loaded = replace(loaded, descriptor=loaded.descriptor.with_shape_range(shape_range))
        if the_plan.candidates == (BASELINE,) and not the_plan.measured:
            return self._eager(entry, loaded, the_plan)
        digest = await asyncio.to_thread(weights_hash, loaded.module.state_dict())
        key = self._key(entry, loaded, the_plan, digest)
        settings = self._settings(loaded, the_plan, digest)
        cached = await self.cache.get_or_build(key, self._builder(entry, loaded, the_plan, settings))
        return await asyncio.to_thread(self._open, entry, loaded, the_plan, cached)  # off the event loop

    async def measure(
        self, entry: ModelEntry, requested: str, size: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        """Build, check and time every candidate of the plan (and eager FP32) without caching.

        What ``auto`` decides, with every candidate's numbers (those that failed their gate are
        timed too); for ``model-manager bench``. Intermediates of earlier builds are reused.
        """
        the_plan = self.plan_for(requested)
        loaded = await asyncio.to_thread(entry.load)
        digest = await asyncio.to_thread(weights_hash, loaded.module.state_dict())
        settings = replace(self._settings(loaded, the_plan, digest), time_failed=True)
        if size is not None:
            settings = replace(settings, opt_size=loaded.descriptor.fit_size(*size))
        with tempfile.TemporaryDirectory(prefix="model_manager_bench_") as tmp:
            out = await self._builder(entry, loaded, the_plan, settings)(Path(tmp))
        return {
            "model": f"{entry.model_type}/{entry.name}",
            "optimization": the_plan.requested,
            "input": out.benchmark["input"],
            "decision": out.decision,
            "machine": out.benchmark["machine"],
            "build": out.build,
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
        return TorchRunner(loaded.module, loaded.descriptor, info, device=self._torch_device(the_plan))

    def _torch_device(self, the_plan: Plan) -> str:
        """Where the plan's runners run: ``cpu`` or ``cuda:N`` (the config's CUDA device)."""
        return f"cuda:{self.config.cuda_index}" if the_plan.device == "cuda" else the_plan.device

    def _key(self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan, digest: str) -> CacheKey:
        hw = self.hardware
        device = hw.gpu_key() if the_plan.device == "cuda" else {"kind": "cpu"}
        compiled = any(strategy(c).compiled for c in the_plan.candidates)
        if the_plan.device == "cpu" and (the_plan.measured or compiled):
            # the decision (or compiled machine code) depends on this CPU and its threads
            device = {**hw.cpu_key(), "num_threads": self.config.num_threads}
        settings = self._settings(loaded, the_plan, digest)
        return make_key(
            entry.model_type,
            entry.name,
            digest,
            the_plan.requested,
            architecture=loaded.architecture,
            hyperparameters=loaded.hyperparameters,
            precision="auto"
            if the_plan.measured or the_plan.fallback
            else strategy(the_plan.candidates[0]).precision,
            profile=loaded.descriptor.profile.to_dict() if loaded.descriptor.profile else None,
            export=EXPORT_SETTINGS,
            device=device,
            extra={
                "candidates": list(the_plan.candidates),
                "gates": settings.gates,
                "opt": [list(settings.opt_size), settings.opt_batch],
                "int8_search_trials": settings.int8_max_trials,
                "method": BUILD_METHOD,
                "graph_revision": loaded.graph_revision,
                "host_memory": POLICY if self.config.keep_freed_memory else "glibc defaults",
                **({"tensorrt": settings.tensorrt} if _builds_engines(the_plan) else {}),
                **({"onnxruntime": settings.onnxruntime} if settings.onnxruntime else {}),
            },
        )

    def _settings(self, loaded: LoadedModel, the_plan: Plan, digest: str) -> BuildSettings:
        batch, height, width = loaded.descriptor.opt_shape()
        return BuildSettings(
            device=the_plan.device,
            gates=self.config.quality.by_precision(),
            time_budget_s=self.config.auto_time_budget_s,
            num_threads=self.config.num_threads,
            int8_max_trials=self.config.int8_search_trials,
            keep_freed_memory=self.config.keep_freed_memory,
            opt_size=(height, width),
            opt_batch=batch,
            weights_sha256=digest,
            intermediates_root=str(self.cache.root),
            tensorrt=self.config.tensorrt.build_fields(),
            cuda_index=self.config.cuda_index,
            onnxruntime=self.config.onnxruntime.to_dict(),
        )

    def _builder(
        self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan, settings: BuildSettings
    ) -> Any:
        label = f"{entry.model_type}/{entry.name} [{the_plan.requested}]"

        async def build(folder: Path) -> BuildOutput:
            if self.config.build_in_subprocess and entry.weights.kind != "factory":
                return await build_in_subprocess(
                    loaded.module,
                    loaded.architecture,
                    dict(loaded.hyperparameters),
                    loaded.descriptor,
                    the_plan,
                    settings,
                    folder,
                    label,
                )
            out = await asyncio.to_thread(
                build_plan, loaded.module, loaded.descriptor, the_plan, folder, settings, publish, label
            )
            if entry.weights.kind == "factory":
                out.notes.append(
                    "built in-process: a user factory model cannot be rebuilt in a build process"
                )
            return out

        return build

    def _open(self, entry: ModelEntry, loaded: LoadedModel, the_plan: Plan, cached: CacheEntry) -> Runner:
        m = cached.manifest
        device = self._torch_device(the_plan)
        chosen = str(m.decision.get("chosen") or the_plan.candidates[0])
        cand = get_candidate(chosen)
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
            device,
            self.config.num_threads,
            cuda_graph=self.config.tensorrt.cuda_graph,
            onnxruntime=self.config.onnxruntime.to_dict(),
        )
        with on_device(device):
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


def _builds_engines(the_plan: Plan) -> bool:
    """Whether the plan may build a TensorRT engine (whose build options then join the key)."""
    return any(strategy(c).backend == "tensorrt" for c in the_plan.candidates)
