"""The model registry: (type, name) -> architecture, hyperparameters, weights source, descriptor.

One registry per manager, seeded from the built-in catalogue (``zoo.py``), in the style of timm's
registry: names resolve to entries, ``"default"`` resolves to each type's default, and users add
their own checkpoints (detected declaratively) or ``nn.Module`` factories.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
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
                f"call register_checkpoint({self.model_type!r}, {self.name!r}, path) with {w.hint}"
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
        _check_matches(self, loaded)
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


class ModelRegistry:
    """Entries by (type, name); ``default`` resolves to the type's default entry."""

    def __init__(self, entries: Iterable[ModelEntry] = ()) -> None:
        self._entries: dict[tuple[str, str], ModelEntry] = {}
        for entry in entries:
            self.register(entry)

    @classmethod
    def with_builtins(cls) -> ModelRegistry:
        """A registry holding the built-in catalogue."""
        from .zoo import builtin_entries

        return cls(builtin_entries())

    def register(self, entry: ModelEntry, *, replace_existing: bool = False) -> ModelEntry:
        """Add an entry; an existing (type, name) is replaced only when asked."""
        validate_type(entry.model_type)
        validate_name("model name", entry.name)
        if entry.name == DEFAULT_NAME:
            raise InvalidNameError(f"{DEFAULT_NAME!r} is reserved: it resolves to the type's default")
        key = (entry.model_type, entry.name)
        if key in self._entries and not replace_existing:
            raise InvalidNameError(f"{entry.model_type}/{entry.name} is already registered")
        if entry.default:
            self._clear_default(entry.model_type)
        self._entries[key] = entry
        return entry

    def get(self, model_type: str, name: str) -> ModelEntry:
        """The entry for (type, name); ``default`` gives the type's default."""
        validate_type(model_type)
        if name == DEFAULT_NAME:
            return self.default(model_type)
        try:
            return self._entries[(model_type, name)]
        except KeyError:
            known = sorted(n for t, n in self._entries if t == model_type)
            raise UnknownModelError(
                f"no {model_type} model named {name!r}; registered: {[*known, DEFAULT_NAME]}"
            ) from None

    def default(self, model_type: str) -> ModelEntry:
        for entry in self._entries.values():
            if entry.model_type == model_type and entry.default:
                return entry
        raise UnknownModelError(f"no default {model_type} model is registered")

    def entries(self, model_type: str | None = None) -> list[ModelEntry]:
        """Entries grouped by type (in MODEL_TYPES order), each type's default first."""
        chosen = [e for e in self._entries.values() if model_type in (None, e.model_type)]
        return sorted(chosen, key=lambda e: (MODEL_TYPES.index(e.model_type), not e.default))

    def register_checkpoint(self, model_type: str, name: str, path: str | Path) -> ModelEntry:
        """Detect the file's architecture, load it strictly, and register it under ``name``."""
        validate_type(model_type)
        validate_name("model name", name)
        path = Path(path).expanduser().resolve()
        loaded = load_checkpoint(path, model_type)
        existing = self._entries.get((model_type, name))
        entry = ModelEntry(
            model_type=model_type,
            name=name,
            architecture=loaded.architecture,
            descriptor=loaded.descriptor,
            weights=WeightsSource("file", path=path),
            hyperparameters=dict(loaded.hyperparameters),
            default=existing.default if existing else False,
            description=existing.description if existing else f"registered from {path.name}",
        )
        if existing is not None:
            if existing.weights.kind == "required":  # a published name: the file must be that model
                _check_matches(existing, loaded)
            log.info("%s/%s now loads from %s", model_type, name, path)
        return self.register(entry, replace_existing=True)

    def register_factory(
        self,
        model_type: str,
        name: str,
        factory: Callable[[], nn.Module],
        descriptor: ModelDescriptor,
        *,
        default: bool = False,
        description: str = "",
    ) -> ModelEntry:
        """Register a user ``nn.Module`` factory with the descriptor that says how to call it."""
        entry = ModelEntry(
            model_type=model_type,
            name=name,
            architecture=descriptor.architecture or "custom",
            descriptor=descriptor,
            weights=WeightsSource("factory"),
            default=default,
            description=description or f"user factory {getattr(factory, '__name__', '')}".strip(),
            factory=factory,
        )
        return self.register(entry, replace_existing=True)

    def register_model(
        self, model_type: str, name: str, descriptor: ModelDescriptor, *, default: bool = False
    ) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
        """Decorator form of :meth:`register_factory` (as timm's ``@register_model``)."""

        def decorate(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
            self.register_factory(model_type, name, factory, descriptor, default=default)
            return factory

        return decorate

    def _clear_default(self, model_type: str) -> None:
        for key, entry in self._entries.items():
            if entry.model_type == model_type and entry.default:
                self._entries[key] = replace(entry, default=False)


def _check_matches(entry: ModelEntry, loaded: LoadedModel) -> None:
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
