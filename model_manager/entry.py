"""A registered model: ``ModelEntry`` (what it is, where its weights are, how to call it) and its names.

The leaf both the registry and the built-in catalogue (``zoo.py``) build on, so neither imports
the other's internals: the registry imports the catalogue, the catalogue imports only this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from .checkpoint import load_checkpoint
from .descriptor import ModelDescriptor
from .errors import CheckpointError, InvalidNameError, UnknownModelError, WeightsUnavailableError
from .models import LoadedModel, all_architectures

log = logging.getLogger(__name__)

MODEL_TYPES = ("style_transfer", "super_resolution", "interpolation")
DEFAULT_NAME = "default"
# Names become folders in the artifact cache: no separators, no leading dot, bounded length.
# Matched with fullmatch: "$" would also accept a name ending in a newline.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")

WeightsKind = Literal["file", "package", "seeded", "required", "factory"]


@dataclass(frozen=True)
class WeightsSource:
    """Where an entry's weights come from: a file, a package resource, a seed, or nowhere yet."""

    kind: WeightsKind
    path: Path | None = None
    seed: int = 0
    hint: str = ""

    def describe(self) -> str:
        if self.kind == "package" and self.path is not None:
            return f"shipped, trained here: {self.path.name}"
        if self.kind == "file":
            return f"file: {self.path}"
        if self.kind == "seeded":
            return f"seeded random init (seed {self.seed}), untrained"
        if self.kind == "required":
            return f"not on this machine: register {self.hint}"
        return "user factory"


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: what it is, where its weights are, and how to call it."""

    model_type: str
    name: str
    architecture: str
    descriptor: ModelDescriptor
    weights: WeightsSource
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False
    description: str = ""
    factory: Callable[[], nn.Module] | None = None

    def load(self) -> LoadedModel:
        """Build the eval-mode FP32 module with its weights (reads files; call off the event loop)."""
        w = self.weights
        if w.kind == "required":
            raise WeightsUnavailableError(
                f"{self.model_type}/{self.name} has no weights on this machine; "
                f"call register_checkpoint({self.model_type!r}, {self.name!r}, path) with {w.hint}",
                model=f"{self.model_type}/{self.name}",
                needs=w.hint,
            )
        if w.kind == "factory":
            assert self.factory is not None
            module = self.factory().eval().float()
            return LoadedModel(module, self.descriptor, self.architecture, dict(self.hyperparameters))
        arch = all_architectures()[self.architecture]
        if w.kind == "seeded":
            return arch.create(self.hyperparameters, seed=w.seed)
        assert w.path is not None
        loaded = load_checkpoint(w.path, self.model_type)
        check_matches(self, loaded)
        return loaded

    def parameter_count(self) -> int | None:
        """Parameters of the architecture at these hyperparameters (built on the meta device, no memory)."""
        if self.weights.kind == "factory":
            return None
        import torch

        with torch.device("meta"):
            module = all_architectures()[self.architecture].build(**self.hyperparameters)
        return sum(p.numel() for p in module.parameters())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "name": self.name,
            "architecture": self.architecture,
            "parameters": self.parameter_count(),
            "default": self.default,
            "weights": self.weights.describe(),
            "description": self.description,
            "descriptor": self.descriptor.to_dict(),
        }


def validate_name(kind: str, value: str) -> str:
    """Reject names that could escape the cache folder or are not identifiers."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidNameError(
            f"{kind} must be 1-64 characters of letters, digits, '.', '_', '+', '-' "
            f"(not starting with a dot, no '..'), got {value!r}"
        )
    return value


def validate_type(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        raise UnknownModelError(f"unknown model type {model_type!r}; expected one of {list(MODEL_TYPES)}")
    return model_type


def check_matches(entry: ModelEntry, loaded: LoadedModel) -> None:
    """A file registered under a catalogue name must be that catalogue entry's architecture."""
    if entry.weights.kind == "factory":
        return
    expected = (entry.architecture, dict(entry.hyperparameters))
    got = (loaded.architecture, dict(loaded.hyperparameters))
    if entry.hyperparameters and expected != got:
        raise CheckpointError(
            f"{entry.model_type}/{entry.name} expects {expected[0]} {expected[1]}, "
            f"the file is {got[0]} {got[1]}"
        )
