"""OnnxRuntimeOptions: what a deployer passes through to ONNX Runtime (``ModelConfig.onnxruntime``).

Three passthroughs, applied to every session that serves or is checked for serving (not to the
calibration and search sessions, which the build owns): ``SessionOptions`` attributes by name (an
enum attribute takes its member's name, e.g. ``{"execution_mode": "ORT_PARALLEL"}``), session
config entries (``add_session_config_entry``, e.g. ``{"session.intra_op.allow_spinning": "0"}``)
and provider options per execution provider (``{"CUDAExecutionProvider": {"gpu_mem_limit":
2 << 30}}``). A name ONNX Runtime does not know is refused when the session is made, naming it.
Values are JSON scalars, so the options travel to the build process and into the cache key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelInputError

Scalar = str | int | float | bool


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """Session options, session config entries and per-provider options for ONNX Runtime sessions."""

    session_options: Mapping[str, Scalar] = field(default_factory=dict)
    config_entries: Mapping[str, str] = field(default_factory=dict)
    provider_options: Mapping[str, Mapping[str, Scalar]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_scalars("session_options", self.session_options)
        _check_scalars("config_entries", self.config_entries, str)
        if not isinstance(self.provider_options, Mapping):
            raise ModelInputError(
                f"provider_options must be a mapping, got {type(self.provider_options).__name__}"
            )
        for provider, options in self.provider_options.items():
            _check_scalars(f"provider_options[{provider!r}]", options)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts (what ``BuildSettings.onnxruntime`` and the cache key hold); empty when unset."""
        data = {
            "session_options": dict(self.session_options),
            "config_entries": dict(self.config_entries),
            "provider_options": {p: dict(o) for p, o in self.provider_options.items()},
        }
        return {k: v for k, v in data.items() if v}


def _check_scalars(
    name: str, values: object, kind: type | tuple[type, ...] = (str, int, float, bool)
) -> None:
    if not isinstance(values, Mapping):
        raise ModelInputError(f"{name} must be a mapping of names to values, got {type(values).__name__}")
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, kind):
            raise ModelInputError(
                f"{name}: expected a name and a {_names(kind)} value, got {key!r}: {value!r}"
            )


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " / ".join(k.__name__ for k in kinds)
