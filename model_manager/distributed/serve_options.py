"""ServeOptions: what one Ray Serve deployment serves and how it scales, validated on creation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig, check_count
from ..entry import validate_name, validate_type
from ..errors import ModelInputError
from ..optim.strategies import parse_optimization

if TYPE_CHECKING:
    pass


_AUTOSCALING_KEYS = ("min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests")


@dataclass(frozen=True)
class ServeOptions:
    """What to serve and how: the model, replicas or autoscaling, request limits and the replica's config.

    Each replica opens its own :class:`ModelManager` on the built-in catalogue, so a model must
    be a built-in one (the embedded defaults or a published checkpoint that is on the machine).

    ``autoscaling`` is Ray's ``autoscaling_config`` passed through (``min_replicas``,
    ``max_replicas``, ``target_ongoing_requests`` ...); when given it sets the replica count and
    ``num_replicas`` must be left at 1 or None. ``cache_dir``, ``device`` and ``num_threads`` build
    the replica's :class:`ModelConfig` over ``ModelConfig.from_env`` (None: the environment's).
    """

    model_type: str
    name: str = "default"
    optimization: str = "auto"
    num_replicas: int | None = 1
    autoscaling: Mapping[str, Any] | None = None
    max_ongoing_requests: int = 2
    """Requests one replica takes at once (Serve's router queues the rest): 2 lets one request's
    decode and PNG encode overlap another's inference and keeps a request waiting at the replica
    (with 1, the router's retries leave the replica idle between requests)."""
    max_concurrent_inferences: int | None = None
    """Runner calls one replica makes at once (None: up to ``max_ongoing_requests``); 1 keeps a
    replica with ``num_threads=1`` on one core however many requests it holds."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_pixels: int = 2048 * 2048
    max_body_bytes: int = 64 * 1024 * 1024
    cache_dir: str | Path | None = None
    device: str | None = None
    num_threads: int | None = None
    route_prefix: str | None = None
    png_compress_level: int = 1
    """zlib level of the PNG answers (1: fast, a little larger; the pixels are the same)."""
    extra_config: Mapping[str, Any] = field(default_factory=dict)
    """Further :class:`ModelConfig` fields (``max_loaded_models``, ``auto_exclude`` ...)."""

    def __post_init__(self) -> None:
        validate_type(self.model_type)
        validate_name("model name", self.name)
        object.__setattr__(self, "optimization", parse_optimization(self.optimization))
        if self.autoscaling is not None:
            if self.num_replicas not in (None, 1):
                raise ModelInputError(
                    f"pass either num_replicas or autoscaling, got num_replicas={self.num_replicas} "
                    f"and autoscaling={dict(self.autoscaling)}"
                )
            unknown = sorted(set(self.autoscaling) - set(_AUTOSCALING_KEYS) - _ray_autoscaling_keys())
            if unknown:
                raise ModelInputError(
                    f"unknown autoscaling keys {unknown}; expected e.g. {_AUTOSCALING_KEYS}"
                )
            object.__setattr__(self, "autoscaling", dict(self.autoscaling))
            object.__setattr__(self, "num_replicas", None)
        elif self.num_replicas is None:
            raise ModelInputError("num_replicas=None needs autoscaling; pass a replica count or autoscaling")
        else:
            check_count("num_replicas", self.num_replicas)
        for name in ("max_ongoing_requests", "max_pixels", "max_body_bytes"):
            check_count(name, getattr(self, name))
        if self.max_concurrent_inferences is not None:
            check_count("max_concurrent_inferences", self.max_concurrent_inferences)
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ModelInputError(f"{name} must be a number >= 0, got {value!r}")
        if not (isinstance(self.png_compress_level, int) and 0 <= self.png_compress_level <= 9):
            level = self.png_compress_level
            raise ModelInputError(f"png_compress_level must be an integer in 0..9, got {level!r}")
        if self.route_prefix is not None and not self.route_prefix.startswith("/"):
            raise ModelInputError(f"route_prefix must start with '/', got {self.route_prefix!r}")
        self.model_config()  # a bad device or thread count fails here, not in every replica

    @property
    def route(self) -> str:
        """The HTTP route prefix: ``route_prefix``, else ``/<model_type>/<name>``."""
        return self.route_prefix or f"/{self.model_type}/{self.name}"

    @property
    def app_name(self) -> str:
        """The Serve application's name (one application per model)."""
        return f"{self.model_type}-{self.name}"

    def model_config(self) -> ModelConfig:
        """The replica's ModelConfig: the environment's, with the fields set here on top."""
        overrides: dict[str, Any] = dict(self.extra_config)
        for name in ("cache_dir", "device", "num_threads"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        return ModelConfig.from_env(**overrides)

    def with_replicas(self, num_replicas: int) -> ServeOptions:
        """A copy with a fixed replica count (autoscaling off)."""
        return replace(self, num_replicas=num_replicas, autoscaling=None)


def _ray_autoscaling_keys() -> set[str]:
    """Every field of Ray's AutoscalingConfig where Ray is installed (else none beyond the common ones)."""
    try:
        from ray.serve.config import AutoscalingConfig
    except ImportError:
        return set()
    fields = getattr(AutoscalingConfig, "model_fields", None) or getattr(AutoscalingConfig, "__fields__", {})
    return set(fields)


# -- request errors ----------------------------------------------------------------------------------
