"""ModelConfig: cache folder, device policy, threads, quality gates and limits, with env overrides.

Environment variables (read by :meth:`ModelConfig.from_env` and by the default constructor's
``cache_dir``): ``MODEL_MANAGER_CACHE_DIR``, ``MODEL_MANAGER_DEVICE``, ``MODEL_MANAGER_NUM_THREADS``,
``MODEL_MANAGER_MAX_LOADED``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ModelInputError

DevicePolicy = Literal["auto", "cpu", "cuda"]
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
    """Minimum PSNR (dB) an artifact must reach against the FP32 reference to be served."""

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
    build_in_subprocess: bool = True
    """Build artifacts in a child process (a native crash cannot take the application down)."""
    lock_timeout_s: float = 3600.0
    """How long to wait for another process building the same artifact."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        if self.device not in ("auto", "cpu", "cuda"):
            raise ModelInputError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ModelInputError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if self.max_loaded_models < 1:
            raise ModelInputError(f"max_loaded_models must be >= 1, got {self.max_loaded_models}")
        if self.warmup_concurrency < 1:
            raise ModelInputError(f"warmup_concurrency must be >= 1, got {self.warmup_concurrency}")
        if self.auto_time_budget_s <= 0 or self.lock_timeout_s <= 0:
            raise ModelInputError("auto_time_budget_s and lock_timeout_s must be > 0")

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

    def replace(self, **changes: object) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _int_from_env(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ModelInputError(f"{var} must be an integer, got {raw!r}") from None
