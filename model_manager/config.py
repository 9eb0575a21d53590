"""ModelConfig: cache folder, device policy, threads, quality gates and limits, with env overrides.

Environment variables (read by :meth:`ModelConfig.from_env` and by the default constructor's
``cache_dir``): ``MODEL_MANAGER_CACHE_DIR``, ``MODEL_MANAGER_DEVICE``, ``MODEL_MANAGER_NUM_THREADS``,
``MODEL_MANAGER_MAX_LOADED``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .descriptor import ShapeRange
from .errors import ModelInputError
from .optim.ort_options import OnnxRuntimeOptions
from .optim.strategies import strategy
from .optim.trt_options import TensorRTOptions

DevicePolicy = str
"""``auto`` (a CUDA GPU where one is visible, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
WarmupSpec = tuple[str, str, str]


def default_cache_dir() -> Path:
    """``$MODEL_MANAGER_CACHE_DIR``, else ``$XDG_CACHE_HOME/model_manager``, else ``~/.cache/...``."""
    env = os.environ.get("MODEL_MANAGER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "model_manager"


@dataclass(frozen=True)
class QualityGates:
    """Minimum PSNR (dB) an artifact must reach against the FP32 reference to be served.

    The one place gates are defined: the build, ``ModelQuantizer`` and every report read them here.
    """

    fp32_min_psnr: float = 50.0
    fp16_min_psnr: float = 40.0
    bf16_min_psnr: float = 40.0
    int8_min_psnr: float = 35.0

    def by_precision(self) -> dict[str, float]:
        return {
            "fp32": self.fp32_min_psnr,
            "fp16": self.fp16_min_psnr,
            "bf16": self.bf16_min_psnr,
            "int8": self.int8_min_psnr,
        }

    def for_precision(self, precision: str) -> float:
        """The gate of ``precision``; anything else must be as exact as FP32."""
        return self.by_precision().get(precision, self.fp32_min_psnr)

    @classmethod
    def from_precisions(cls, gates: Mapping[str, float]) -> QualityGates:
        """The inverse of :meth:`by_precision` (missing precisions keep their defaults)."""
        return cls(**{f"{p}_min_psnr": float(v) for p, v in gates.items() if p in _PRECISIONS})


_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class ModelConfig:
    """Settings of one ModelManager; immutable, validated on creation."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    device: DevicePolicy = "auto"
    num_threads: int | None = None
    max_loaded_models: int = 8
    quality: QualityGates = field(default_factory=QualityGates)
    warmup: Sequence[WarmupSpec] = ()
    warmup_concurrency: int = 2
    auto_time_budget_s: float = 3.0
    """Seconds of timing per candidate when ``auto`` measures (after warm-up)."""
    auto_exclude: tuple[str, ...] = ()
    """Candidates ``auto`` must not consider, e.g. ("int8-torch",) where restarts must load in
    well under a second (its cache hit re-traces the model with torch.fx: 2-3 s in a fresh process)."""
    auto_include: tuple[str, ...] = ()
    """Candidates ``auto`` measures only when named here (the strategy table marks them opt-in):
    ("aoti",) adds the AOTInductor compile, a minute or more per model on 2 cores, measured
    slower than the served engine on every default model on a CPU (README)."""
    int8_search_trials: int = 48
    """Trials the INT8 float-layer search may spend per build (``optim/mixed_precision.py``); 0
    quantizes every quantizable layer (the INT8 gate still decides whether it is served)."""
    build_in_subprocess: bool = True
    """Build artifacts in a child process (a native crash cannot take the application down)."""
    lock_timeout_s: float = 3600.0
    """How long to wait for another process building the same artifact."""
    shape_ranges: Mapping[str, ShapeRange] = field(default_factory=dict)
    """Input sizes per model type the optimized artifacts must take, e.g. ``{"super_resolution":
    ShapeRange((540, 960))}``; a type not named keeps its model's profile (style transfer and
    interpolation reach a 1080p landscape frame). ``load_optimized_model(shape_range=...)`` wins."""
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    onnxruntime: OnnxRuntimeOptions = field(default_factory=OnnxRuntimeOptions)
    """``SessionOptions`` attributes, session config entries and per-provider options passed to every
    ONNX Runtime session that serves (and that a build checks and times); in the key when set."""
    """TensorRT workspace, optimisation level, hardware / version compatibility (in the cache key
    of engine builds) and CUDA graphs for the served engine."""
    keep_freed_memory: bool = True
    """Keep freed memory in the process (glibc: one arena, no mmap; ``host_memory.py``): eager
    PyTorch on the CPU stops page-faulting on every call (1.2-1.3x faster at 256x256, 1.7-2.3x
    at 1280x704); the process keeps its peak RSS (9-40% higher at 1280x704). Process-wide; once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ModelInputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.num_threads is not None:
            check_count("num_threads", self.num_threads)
        check_count("max_loaded_models", self.max_loaded_models)
        check_count("warmup_concurrency", self.warmup_concurrency)
        if (
            isinstance(self.int8_search_trials, bool)
            or not isinstance(self.int8_search_trials, int)
            or not (self.int8_search_trials == 0 or self.int8_search_trials >= 4)
        ):
            raise ModelInputError(
                f"int8_search_trials must be 0 (off) or an integer >= 4, got {self.int8_search_trials!r}"
            )
        _check_seconds("auto_time_budget_s", self.auto_time_budget_s, allow_inf=False)
        for field_name in ("auto_exclude", "auto_include"):
            for name in getattr(self, field_name):
                strategy(name)  # UnknownStrategyError listing the valid names
        _check_seconds("lock_timeout_s", self.lock_timeout_s, allow_inf=True)
        for model_type, shape_range in dict(self.shape_ranges).items():
            if not isinstance(shape_range, ShapeRange):
                raise ModelInputError(
                    f"shape_ranges[{model_type!r}] must be a ShapeRange, got {type(shape_range).__name__}"
                )
        object.__setattr__(self, "shape_ranges", dict(self.shape_ranges))
        if not isinstance(self.onnxruntime, OnnxRuntimeOptions):
            raise ModelInputError(
                f"onnxruntime must be an OnnxRuntimeOptions, got {type(self.onnxruntime).__name__}"
            )
        if not isinstance(self.tensorrt, TensorRTOptions):
            raise ModelInputError(f"tensorrt must be a TensorRTOptions, got {type(self.tensorrt).__name__}")
        check_warmup_specs(self.warmup)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ModelConfig:
        """Defaults, then ``MODEL_MANAGER_*`` variables, then explicit keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("MODEL_MANAGER_CACHE_DIR"):
            values["cache_dir"] = Path(env["MODEL_MANAGER_CACHE_DIR"])
        if env.get("MODEL_MANAGER_DEVICE"):
            values["device"] = env["MODEL_MANAGER_DEVICE"]
        for var, name in (
            ("MODEL_MANAGER_NUM_THREADS", "num_threads"),
            ("MODEL_MANAGER_MAX_LOADED", "max_loaded_models"),
        ):
            if env.get(var):
                values[name] = _int_from_env(var, env[var])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def cuda_index(self) -> int:
        """The CUDA device a ``cuda:N`` policy names (0 for ``cuda`` and ``auto``)."""
        return int(self.device.split(":")[1]) if self.device.startswith("cuda:") else 0

    def replace(self, **changes: object) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _int_from_env(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ModelInputError(f"{var} must be an integer, got {raw!r}") from None


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``; else ModelInputError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ModelInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_seconds(name: str, value: object, *, allow_inf: bool) -> None:
    """A duration in seconds: a real number > 0 (NaN never; infinity only where it means 'forever')."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    seconds = float(value) if real else math.nan  # type: ignore[arg-type]
    if not (seconds > 0 and (allow_inf or math.isfinite(seconds))):  # NaN fails "> 0"
        finite = "a" if allow_inf else "a finite"
        raise ModelInputError(f"{name} must be {finite} number of seconds > 0, got {value!r}")


def check_warmup_specs(specs: object) -> None:
    """Warm-up specs must be (type, name, optimization) string triples."""
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
        raise ModelInputError(f"warmup must be a sequence of (type, name, optimization), got {specs!r}")
    for spec in specs:
        if not (isinstance(spec, (tuple, list)) and len(spec) == 3 and all(isinstance(v, str) for v in spec)):
            raise ModelInputError(f"warmup specs must be (type, name, optimization) strings, got {spec!r}")
