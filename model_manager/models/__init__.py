"""Real architectures, one file per family; :func:`all_architectures` imports and registers them."""

from __future__ import annotations

import importlib

from .base import ARCHITECTURES, Architecture, KeyCondition, LoadedModel, StateDict, load_strict

FAMILIES = ("style_transfer", "super_resolution", "interpolation")


def all_architectures() -> dict[str, Architecture]:
    """Import every family module (registering its architectures) and return them by id."""
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")
    return ARCHITECTURES


__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "Architecture",
    "KeyCondition",
    "LoadedModel",
    "StateDict",
    "all_architectures",
    "load_strict",
]
