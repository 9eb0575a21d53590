"""The one candidate registry: loads the plugins (once, on first use) and answers by strategy name.

Plugins are modules of this package with a ``CANDIDATES`` tuple; a plugin whose strategies need an
extra is loaded only where that extra can be imported (found without importing it), so
``import model_manager`` stays light and a machine without OpenVINO or TensorRT simply has fewer
candidates. Only names from the strategy table may be registered.
"""

from __future__ import annotations

import importlib
import threading

from ...errors import StrategyUnavailableError
from ..strategies import BY_NAME, extra_installed
from .base import Candidate

PLUGINS: tuple[tuple[str, str | None], ...] = (
    ("eager", None),
    ("ort", None),
    ("fx_int8", None),
    ("ov", "openvino"),
    ("aoti", None),
    ("trt", "tensorrt"),
)
"""(module, extra it needs) for every plugin of this package."""

_registered: dict[str, Candidate] = {}
_loaded = False
_lock = threading.Lock()


def register_candidate(candidate: Candidate) -> Candidate:
    """Add (or replace) the implementation of one strategy of the table."""
    if candidate.name not in BY_NAME:
        raise ValueError(f"{candidate.name!r} is not in the strategy table (optim/strategies.py)")
    _registered[candidate.name] = candidate
    return candidate


def _load_plugins() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for module, extra in PLUGINS:
            if extra is not None and not extra_installed(extra):
                continue
            for candidate in importlib.import_module(f"{__package__}.{module}").CANDIDATES:
                register_candidate(candidate)
        _loaded = True


def registered() -> dict[str, Candidate]:
    """Every registered candidate by name (plugins loaded on first call)."""
    _load_plugins()
    return dict(_registered)


def get_candidate(name: str) -> Candidate:
    """The candidate for a strategy name; StrategyUnavailableError when no plugin provides it."""
    found = registered().get(name)
    if found is None:
        extra = BY_NAME[name].extra if name in BY_NAME else None
        hint = f" (needs the {extra} extra: pip install 'model_manager[{extra}]')" if extra else ""
        raise StrategyUnavailableError(f"no {name!r} candidate is registered in this build{hint}")
    return found


def available_candidates(device: str) -> set[str]:
    """Names of the registered candidates that can run on ``device``."""
    return {name for name, c in registered().items() if device in c.strategy.devices}
