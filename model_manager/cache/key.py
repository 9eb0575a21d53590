"""Cache keys: everything that changes an artifact, as canonical JSON, and its SHA-256.

Anything that changes the artifact changes the key (weights bytes, architecture and its
arguments, strategy, precision, input profile, export settings, toolchain versions, the GPU for
engines, the machine for measured decisions); anything that does not, does not (the weights'
file path is not part of it, so a moved file with the same bytes hits).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import PurePosixPath
from typing import Any

KEY_FORMAT = 1
TOOLCHAIN_PACKAGES = ("torch", "onnx", "onnxruntime", "tensorrt", "openvino", "nncf", "model_manager")


@cache
def toolchain_versions() -> dict[str, str | None]:
    """Installed versions of every package that can produce an artifact (None when absent)."""
    versions: dict[str, str | None] = {}
    for package in TOOLCHAIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, tuples as lists: the same data always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cache key field of type {type(value).__name__} is not JSON-serialisable")


@dataclass(frozen=True)
class CacheKey:
    """The whole identity of one artifact; ``digest`` names its folder."""

    model_type: str
    name: str
    weights_sha256: str
    strategy: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(canonical_json(dict(self.fields)))
        out.update(
            format=KEY_FORMAT,
            model_type=self.model_type,
            name=self.name,
            weights_sha256=self.weights_sha256,
            strategy=self.strategy,
        )
        return out

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()

    def relative_dir(self) -> PurePosixPath:
        """``<type>/<name>/<weights-hash-prefix>/<strategy>-<key-prefix>``."""
        return PurePosixPath(
            self.model_type, self.name, self.weights_sha256[:12], f"{self.strategy}-{self.digest[:16]}"
        )


def make_key(
    model_type: str,
    name: str,
    weights_sha256: str,
    strategy: str,
    *,
    architecture: str,
    hyperparameters: Mapping[str, Any],
    precision: str,
    profile: Mapping[str, Any] | None,
    export: Mapping[str, Any],
    device: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    versions: Mapping[str, str | None] | None = None,
) -> CacheKey:
    """Assemble a key; ``device`` holds the GPU name / capability for engines, the CPU for decisions."""
    fields = {
        "architecture": architecture,
        "hyperparameters": dict(hyperparameters),
        "precision": precision,
        "profile": dict(profile) if profile else None,
        "export": dict(export),
        "device": dict(device),
        "versions": dict(versions if versions is not None else toolchain_versions()),
        "extra": dict(extra or {}),
    }
    return CacheKey(model_type, name, weights_sha256, strategy, fields)
