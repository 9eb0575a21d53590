"""The manager's in-memory pool of loaded runners: an LRU that closes what it evicts."""

from __future__ import annotations

import logging
from typing import Any

from cachetools import LRUCache

from .runners import Runner

log = logging.getLogger(__name__)

PoolKey = tuple[str, str, str]


class RunnerPool(LRUCache[PoolKey, Runner]):
    """Keeps at most ``maxsize`` runners; an evicted runner is closed."""

    def popitem(self) -> tuple[PoolKey, Runner]:
        key, runner = super().popitem()
        log.info("evicting %s from memory (%d runners max)", "/".join(key), self.maxsize)
        runner.close()
        return key, runner

    def get_open(self, key: PoolKey) -> Runner | None:
        """The pooled runner for ``key`` unless someone closed it."""
        runner = self.get(key)
        if runner is not None and runner.closed:
            del self[key]
            return None
        return runner

    def close_all(self) -> None:
        for runner in list(self.values()):
            runner.close()
        self.clear()

    def __repr__(self) -> str:
        return f"RunnerPool({list(self.keys())!r})"

    def __reduce__(self) -> Any:  # pragma: no cover - runners are not picklable
        raise TypeError("RunnerPool cannot be pickled")
