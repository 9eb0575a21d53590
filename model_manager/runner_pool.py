"""The manager's in-memory pool of loaded runners: an LRU of references, never a closer of held runners.

The pool keeps at most ``maxsize`` runners ready for the next ``load_optimized_model``. Evicting
one only drops the pool's reference: a caller that still holds the runner keeps using it, and
its backend resources (sessions, compiled models, CUDA buffers) are released when the last
holder lets go of it (reference counting: the lease is the reference). The pool also remembers,
weakly, every runner it ever handed out, so the manager can close the ones still alive when it
closes.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from cachetools import LRUCache

from .descriptor import ShapeRange
from .runners import Runner

log = logging.getLogger(__name__)

PoolKey = tuple[str, str, str, ShapeRange | None]
"""(type, name, optimization, the shape range asked for: None is the model's own profile)."""


class RunnerPool(LRUCache[PoolKey, Runner]):
    """At most ``maxsize`` pooled runners; eviction drops the reference and closes nothing."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self._handed_out: weakref.WeakSet[Runner] = weakref.WeakSet()

    def __setitem__(self, key: PoolKey, runner: Runner, *args: Any, **kwargs: Any) -> None:
        self._handed_out.add(runner)
        super().__setitem__(key, runner, *args, **kwargs)

    def popitem(self) -> tuple[PoolKey, Runner]:
        key, runner = super().popitem()
        log.info(
            "dropping %s from memory (%d runners max); it closes when its last holder lets go",
            "/".join(key[:3]),
            self.maxsize,
        )
        return key, runner

    def get_open(self, key: PoolKey) -> Runner | None:
        """The pooled runner for ``key`` unless someone closed it."""
        runner = self.get(key)
        if runner is not None and runner.closed:
            del self[key]
            return None
        return runner

    def drop(self, model_type: str, name: str) -> list[Runner]:
        """Remove every pooled runner of one model (any optimization); returns them, still open."""
        keys = [k for k in self if k[:2] == (model_type, name)]
        return [self.pop(k) for k in keys]

    def alive(self) -> list[Runner]:
        """Every runner handed out that is still referenced somewhere and not closed."""
        return [r for r in list(self._handed_out) if not r.closed]

    def close_all(self) -> None:
        """Close every runner handed out that is still alive (the manager is closing)."""
        for runner in self.alive():
            runner.close()
        self.clear()

    def __repr__(self) -> str:
        return f"RunnerPool({list(self.keys())!r})"

    def __reduce__(self) -> Any:  # pragma: no cover - runners are not picklable
        raise TypeError("RunnerPool cannot be pickled")
