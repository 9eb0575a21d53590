"""The contract every architecture family implements: detect, read hyperparameters, build, load.

Detection is declarative (as in spandrel): an architecture names the keys that must exist, and
hyperparameters are read from tensor shapes. Loading is strict: a missing or unexpected key is
an error that names it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..descriptor import ModelDescriptor
from ..errors import StateDictMismatchError

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class KeyCondition:
    """A declarative test on a state dict's keys: all of ``required`` and none of ``forbidden``."""

    required: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()

    @classmethod
    def has_all(cls, *keys: str, without: tuple[str, ...] = ()) -> KeyCondition:
        return cls(required=tuple(keys), forbidden=tuple(without))

    def __call__(self, state_dict: StateDict) -> bool:
        return all(k in state_dict for k in self.required) and not any(
            k in state_dict for k in self.forbidden
        )

    def describe(self) -> str:
        text = "keys " + ", ".join(self.required)
        if self.forbidden:
            text += " and none of " + ", ".join(self.forbidden)
        return text


@dataclass(frozen=True)
class LoadedModel:
    """A built, strictly loaded, eval-mode FP32 module with its descriptor."""

    module: nn.Module
    descriptor: ModelDescriptor
    architecture: str
    hyperparameters: Mapping[str, Any]
    #: The architecture's ``graph_revision`` (how its forward computes); part of cache keys.
    graph_revision: int = 1


class Architecture(abc.ABC):
    """One architecture family: how to recognise its checkpoints and how to build it."""

    #: Stable identifier, e.g. ``"SRVGGNetCompact"``; part of cache keys.
    id: str
    #: ``style_transfer`` | ``super_resolution`` | ``interpolation``.
    model_type: str
    #: Keys that must (and must not) be present for a state dict to be this architecture.
    detect: KeyCondition
    #: Bumped when the forward pass changes how it computes (same outputs, another graph for
    #: engines), so artifacts exported from the old graph are not served as this one's.
    graph_revision: int = 1

    def matches(self, state_dict: StateDict) -> bool:
        """True when the key condition holds and the hyperparameters can be read from the shapes."""
        if not self.detect(state_dict):
            return False
        try:
            self.hyperparameters(state_dict)
        except (KeyError, ValueError, IndexError):
            return False
        return True

    def prepare_state_dict(self, state_dict: StateDict) -> dict[str, torch.Tensor]:
        """Drop keys this family's published files carry but the module does not (default: none)."""
        return dict(state_dict)

    @abc.abstractmethod
    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        """Read the constructor arguments from tensor shapes; raise ValueError when inconsistent."""

    @abc.abstractmethod
    def build(self, **hyperparameters: Any) -> nn.Module:
        """Construct the module (random init) from its hyperparameters."""

    @abc.abstractmethod
    def descriptor(self, hyperparameters: Mapping[str, Any]) -> ModelDescriptor:
        """Describe inputs, output, value range, size rules and profile for these hyperparameters."""

    def default_hyperparameters(self) -> dict[str, Any]:
        """Hyperparameters of the family's standard configuration (used for seeded builds)."""
        return {}

    def load(self, state_dict: StateDict) -> LoadedModel:
        """Build from a canonical state dict and load it strictly; eval mode, FP32."""
        sd = self.prepare_state_dict(state_dict)
        hp = self.hyperparameters(sd)
        module = self.build(**hp)
        load_strict(module, sd, self.id)
        module.eval().float()
        return LoadedModel(module, self.descriptor(hp), self.id, hp, self.graph_revision)

    def create(self, hyperparameters: Mapping[str, Any] | None = None, seed: int = 0) -> LoadedModel:
        """Build with seeded random weights (for tests and untrained defaults)."""
        hp = dict(self.default_hyperparameters() if hyperparameters is None else hyperparameters)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.build(**hp)
        module.eval().float()
        return LoadedModel(module, self.descriptor(hp), self.id, hp, self.graph_revision)


def load_strict(module: nn.Module, state_dict: StateDict, architecture: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; name missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:20]}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:10]}")
        raise StateDictMismatchError(
            f"checkpoint does not fit {architecture}: " + "; ".join(parts), missing, unexpected
        )
    module.load_state_dict(dict(state_dict), strict=True)


def conv_count(state_dict: StateDict, pattern: str) -> int:
    """Count consecutive indices i for which ``pattern.format(i)`` is a key (from 0)."""
    i = 0
    while pattern.format(i) in state_dict:
        i += 1
    return i


ARCHITECTURES: dict[str, Architecture] = {}
"""Every known architecture by id, in registration order (detection tries them in this order)."""


def register_architecture(cls: type[Architecture]) -> type[Architecture]:
    """Class decorator: instantiate the architecture and add it to :data:`ARCHITECTURES`."""
    arch = cls()
    if arch.id in ARCHITECTURES:
        raise ValueError(f"architecture {arch.id!r} registered twice")
    ARCHITECTURES[arch.id] = arch
    return cls
