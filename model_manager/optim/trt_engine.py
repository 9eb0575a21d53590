"""TensorRT engines from ONNX, for TensorRT 10 and 11 (strongly typed: precision comes from the ONNX).

``engine_from_onnx_file(onnx, engine, profiles, config)`` parses the ONNX, adds one optimization
profile, builds a serialized engine (its phases reported as build-step details) and writes it
with a JSON sidecar (TensorRT version, GPU, compute capability, profiles, precision, source ONNX
SHA-256); ``engine_from_onnx`` does the same with the profile a model's descriptor asks for. The
seed-shaped ``TensorRTOptimizer`` (``trt_optimizer.py``) and the ``tensorrt`` candidates both call
these. There are no precision flags to set: an FP16 engine is built from the FP16 ONNX this
project makes (``optim/onnx_fp16.py``), an INT8 engine from the calibrated Q/DQ ONNX the static
quantizer makes for ONNX Runtime (one calibration serves CPU and GPU). On TensorRT 10 the network
is created STRONGLY_TYPED so both versions behave alike. The timing cache lives beside the
engines for the seed's API and, for managed builds, under the cache root, one file per GPU and
TensorRT version (``shared_timing_cache``); it is merged under a file lock, so concurrent builds
only ever add to it, and it never ships inside a cache entry.

An engine built for another GPU or TensorRT version is reported by ``engine_is_current`` (from
the sidecar) and treated as a cache miss by callers, never deserialized.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, SupportsInt

from ..descriptor import ModelDescriptor
from ..errors import BackendError, InvalidInputError
from ..progress import detail, detail_reporter
from ..runners.trt_session import failure, import_tensorrt
from .trt_options import HardwareCompat, check_build_fields
from .trt_profiles import InputProfile, Shape, opt_at_size, profiles_from_descriptor, profiles_from_shapes

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Precision = Literal["fp16", "int8", "fp32"]
SIDECAR_SUFFIX = ".json"
TIMING_CACHE = "timing.cache"
ENGINE = "model.engine"


@dataclass(frozen=True)
class TensorRTConfig:
    """How one engine is built: the precision of its ONNX, the :class:`TensorRTOptions` build fields
    (all in the engine's cache key) and where the timing cache lives (not in the key)."""

    precision: Precision = "fp16"
    """What the ONNX given is: ``fp16`` (an FP16 ONNX), ``int8`` (a Q/DQ ONNX) or ``fp32``."""
    workspace_bytes: int = 4 << 30
    optimization_level: int = 3
    """``builder_optimization_level`` 0..5: higher builds slower and may run faster."""
    timing_cache: Path | None = None
    """The timing cache file; None: ``timing.cache`` beside the engine. Managed builds use one per
    GPU and TensorRT version under the cache root (:func:`shared_timing_cache`)."""
    hardware_compatibility: HardwareCompat = "none"
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("fp16", "int8", "fp32"):
            raise InvalidInputError(f"precision must be fp16, int8 or fp32, got {self.precision!r}")
        check_build_fields(self.workspace_bytes, self.optimization_level, self.hardware_compatibility)

    @classmethod
    def from_options(
        cls, precision: Precision, options: Mapping[str, Any], timing_cache: Path | None = None
    ) -> TensorRTConfig:
        """A config from :meth:`TensorRTOptions.build_fields` (what ``BuildSettings.tensorrt`` holds)."""
        return cls(precision=precision, timing_cache=timing_cache, **options)

    def key_fields(self) -> dict[str, Any]:
        data = asdict(self)
        data["timing_cache"] = None  # where the cache lives does not change the engine
        return data


TIMING_DIR = ".tensorrt-timing"
"""Under the cache root: one timing cache per GPU and TensorRT version, shared by every build."""


def shared_timing_cache(cache_root: Path, env: Mapping[str, Any]) -> Path:
    """The timing cache every build on this GPU with this TensorRT shares, outside any entry.

    Timing results are only valid for the GPU (and its compute capability) and the TensorRT
    version that measured them, so each pair has its own file; merges happen under its lock.
    """
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", str(env.get("gpu") or "no-gpu")).strip("-").lower()
    cc = "".join(str(v) for v in env.get("compute_capability") or ("x",))
    return cache_root / TIMING_DIR / f"{gpu}-sm{cc}-trt{env.get('tensorrt') or 'none'}.cache"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def current_environment() -> dict[str, Any]:
    """TensorRT version, GPU name and compute capability of this process (what an engine is bound to)."""
    import torch

    trt_version = getattr(import_tensorrt(), "__version__", None)
    if not torch.cuda.is_available():
        return {"tensorrt": trt_version, "gpu": None, "compute_capability": None}
    major, minor = torch.cuda.get_device_capability()
    return {
        "tensorrt": trt_version,
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": [major, minor],
    }


def make_sidecar(
    onnx_path: Path, profiles: Sequence[InputProfile], config: TensorRTConfig, env: Mapping[str, Any]
) -> dict[str, Any]:
    """What an engine was built from and for; the cache key and ``engine_is_current`` read it."""
    return {
        "format": 1,
        "tensorrt": env.get("tensorrt"),
        "gpu": env.get("gpu"),
        "compute_capability": env.get("compute_capability"),
        "precision": config.precision,
        "profiles": {p.name: p.to_dict() for p in profiles},
        "source_onnx_sha256": sha256_file(onnx_path),
        "config": config.key_fields(),
    }


def engine_is_current(sidecar: Mapping[str, Any], env: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Whether an engine with this sidecar can run here, and if not, why (one reason per rule).

    TensorRT: the version that built it, or with ``version_compatible`` any later release of the
    same major. GPU: the same model; ``same_compute_capability`` any GPU of its compute capability;
    ``ampere_plus`` any GPU of compute capability 8.0 or newer.
    """
    config = sidecar.get("config") or {}
    reasons = [r for r in (_version_rule(sidecar, env, config), _gpu_rule(sidecar, env, config)) if r]
    return not reasons, reasons


def _version_rule(
    sidecar: Mapping[str, Any], env: Mapping[str, Any], config: Mapping[str, Any]
) -> str | None:
    built, here = sidecar.get("tensorrt"), env.get("tensorrt")
    if built == here:
        return None
    b, h = _release(built), _release(here)
    if config.get("version_compatible") and b and h:
        if b[0] == h[0] and h >= b:
            return None
        return (
            f"built version-compatible by tensorrt {built!r}: runs on {b[0]}.x from {built}, this is {here!r}"
        )
    return f"built for tensorrt {built!r}, this is {here!r}"


def _gpu_rule(sidecar: Mapping[str, Any], env: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    compat = config.get("hardware_compatibility", "none")
    built, here = sidecar.get("compute_capability"), env.get("compute_capability")
    built_cc, here_cc = _capability(built), _capability(here)
    if compat == "ampere_plus":
        if here_cc is not None and here_cc >= (8, 0):
            return None
        return f"built for Ampere or newer (compute capability >= 8.0), this is {here!r}"
    if built_cc != here_cc or here_cc is None:
        return f"built for compute_capability {built!r}, this is {here!r}"
    if compat == "none" and sidecar.get("gpu") != env.get("gpu"):
        return f"built for gpu {sidecar.get('gpu')!r}, this is {env.get('gpu')!r}"
    return None


def _release(version: object) -> tuple[int, ...] | None:
    """``"10.3.0.26"`` as (10, 3, 0, 26); None for anything else."""
    parts = str(version or "").split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def _capability(value: object) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    path = engine_path.with_suffix(engine_path.suffix + SIDECAR_SUFFIX)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"expected an engine sidecar at {path}, got {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"expected a JSON object in {path}, got {type(data).__name__}")
    return data


def engine_from_onnx_file(
    onnx_path: Path, engine_path: Path, profiles: Sequence[InputProfile], config: TensorRTConfig
) -> dict[str, Any]:
    """Build ``engine_path`` (+ sidecar) from ``onnx_path`` with one profile; return the sidecar."""
    if not onnx_path.is_file():
        raise InvalidInputError(f"expected an ONNX file, but {str(onnx_path)!r} does not exist")
    started = time.perf_counter()
    plan = _build(onnx_path, profiles, engine_path.parent, config)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(engine_path, plan)
    sidecar = make_sidecar(onnx_path, profiles, config, current_environment())
    sidecar["build_seconds"] = round(time.perf_counter() - started, 3)
    sidecar["engine_bytes"] = len(plan)
    _write_atomic(engine_path.with_suffix(engine_path.suffix + SIDECAR_SUFFIX), json.dumps(sidecar).encode())
    log.info("built %s in %.1f s (%d bytes)", engine_path, sidecar["build_seconds"], len(plan))
    return sidecar


def engine_from_onnx(
    onnx_path: Path,
    descriptor: ModelDescriptor,
    folder: Path,
    config: TensorRTConfig,
    opt_size: tuple[int, int],
) -> list[str]:
    """Build ``model.engine`` (+ sidecar) in ``folder`` with the descriptor's profile at ``opt_size``."""
    opt = opt_at_size(descriptor, opt_size)
    profiles, notes = profiles_from_descriptor(descriptor, opt)
    for note in notes:
        detail(note)
    engine_from_onnx_file(onnx_path, folder / ENGINE, profiles, config)
    return [ENGINE, ENGINE + SIDECAR_SUFFIX]


def _build(onnx_path: Path, profiles: Sequence[InputProfile], folder: Path, cfg: TensorRTConfig) -> bytes:
    import_tensorrt()  # BackendUnavailableError naming the extra, not a bare ImportError
    import tensorrt as trt

    from ..runners.trt_session import make_logger

    logger = make_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags())
    parser = trt.OnnxParser(network, logger)
    detail(f"parse {onnx_path.name}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise BackendError(f"tensorrt could not parse {onnx_path.name}: {errors}")
    config = _builder_config(builder, network, profiles, cfg)
    cache_path = cfg.timing_cache or folder / TIMING_CACHE
    use_timing_cache(config, cache_path)
    config.progress_monitor = make_progress_monitor()
    detail(f"build the {cfg.precision} engine (minutes: TensorRT times every tactic)")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise failure(f"build an engine from {onnx_path.name}", logger)
    merge_timing_cache(config, cache_path)
    return bytes(plan)


def _builder_config(
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    profiles: Sequence[InputProfile],
    cfg: TensorRTConfig,
) -> trt.IBuilderConfig:
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_bytes)
    config.builder_optimization_level = cfg.optimization_level
    if cfg.hardware_compatibility != "none":
        config.hardware_compatibility_level = getattr(
            trt.HardwareCompatibilityLevel, cfg.hardware_compatibility.upper()
        )
    if cfg.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    profile = builder.create_optimization_profile()
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    by_name = {p.name: p for p in profiles}
    if sorted(names) != sorted(by_name):
        raise InvalidInputError(f"expected a profile for each network input {names}, got {sorted(by_name)}")
    for name in names:
        p = by_name[name]
        profile.set_shape(name, p.min, p.opt, p.max)
    if config.add_optimization_profile(profile) < 0:
        raise BackendError(f"tensorrt rejected the profile {[p.describe() for p in profiles]}")
    return config


def as_profiles(
    value: Mapping[str, tuple[Shape, Shape, Shape] | Shape] | Sequence[InputProfile],
) -> list[InputProfile]:
    """The seed's ``input_shapes`` (a mapping of shapes) or InputProfile items, as profiles."""
    if isinstance(value, Mapping):
        return profiles_from_shapes(value)
    profiles = [p for p in value if isinstance(p, InputProfile)]
    if len(profiles) != len(value):
        raise InvalidInputError(f"expected InputProfile items or a mapping of shapes, got {value!r}")
    return profiles


def _network_flags() -> int:
    """STRONGLY_TYPED on TensorRT 10 (on 11 it is always on and the flag is ignored)."""
    import tensorrt as trt

    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def use_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    """Start the build from the timing cache at ``path`` (empty if absent, or if TensorRT refuses it)."""
    cache = config.create_timing_cache(_read_bytes(path))
    if config.set_timing_cache(cache, False):
        return
    log.warning("tensorrt refused the timing cache %s (another version or GPU); starting empty", path)
    if not config.set_timing_cache(config.create_timing_cache(b""), False):
        raise BackendError(f"tensorrt refused an empty timing cache for {path}")


def make_progress_monitor() -> trt.IProgressMonitor:
    """An IProgressMonitor that reports each build phase as a build step (and to the progress bar).

    TensorRT may call it from its own threads, where the build's context (and so :func:`detail`'s
    listener) is unset: it reports through a reporter bound when the monitor is made.
    """
    import tensorrt as trt

    report = detail_reporter()

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: SupportsInt) -> None:
            report(f"{phase_name} ({int(num_steps)} steps)")

        def step_complete(self, phase_name: str, step_index: SupportsInt) -> bool:
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            log.debug("tensorrt phase done: %s", phase_name)

    return Monitor()


def merge_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    """Combine this build's timing cache into the one on disk, under a file lock, atomically."""
    from filelock import FileLock

    ours = config.get_timing_cache()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", mode=0o600):
        merged = config.create_timing_cache(_read_bytes(path))
        if not merged.combine(ours, False):
            log.warning("timing cache %s is from another TensorRT version; replacing it", path)
            merged = ours
        _write_atomic(path, bytes(merged.serialize()))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
