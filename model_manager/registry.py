"""The model registry: (type, name) -> architecture, hyperparameters, weights source, descriptor.

One registry per manager, seeded from the built-in catalogue (``zoo.py``), in the style of timm's
registry: names resolve to entries, ``"default"`` resolves to each type's default, and users add
their own checkpoints (detected declaratively) or ``nn.Module`` factories.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint
from .descriptor import ModelDescriptor
from .entry import (
    DEFAULT_NAME,
    MODEL_TYPES,
    ModelEntry,
    WeightsSource,
    check_matches,
    validate_name,
    validate_type,
)
from .errors import InvalidNameError, UnknownModelError
from .zoo import builtin_entries

log = logging.getLogger(__name__)


class ModelRegistry:
    """Entries by (type, name); ``default`` resolves to the type's default entry."""

    def __init__(self, entries: Iterable[ModelEntry] = ()) -> None:
        self._entries: dict[tuple[str, str], ModelEntry] = {}
        for entry in entries:
            self.register(entry)

    @classmethod
    def with_builtins(cls) -> ModelRegistry:
        """A registry holding the built-in catalogue."""
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
                check_matches(existing, loaded)
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


__all__ = [
    "DEFAULT_NAME",
    "MODEL_TYPES",
    "ModelEntry",
    "ModelRegistry",
    "WeightsSource",
    "validate_name",
    "validate_type",
]
