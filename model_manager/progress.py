"""The one build-progress channel: builds publish :class:`BuildEvent`s, displays subscribe.

A build is a graph of named steps (``optim/graph.py``). Each step it starts is published as an
event (k of n, elapsed seconds); what a step reports while it runs (``detail("calibrate ...")``,
TensorRT's phases) is published as a detail of the current step. Builds that run in a child
process send their events as JSON lines to the parent, which publishes them here again, so a
subscriber (the CLI's progress line, a log) sees every build the same way, wherever it runs.

Every event is also logged at INFO on ``model_manager.build``. Imports nothing of the project.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("model_manager.build")


@dataclass(frozen=True)
class BuildEvent:
    """One step of one build starting (or, with ``detail``, reporting inside the step)."""

    label: str
    """What is being built, e.g. ``super_resolution/espcn-x2 [auto]``."""
    index: int
    """This step's number, 1-based; ``total`` steps in all (0 / 0 before the plan is known)."""
    total: int
    step: str
    detail: str = ""
    elapsed_s: float = 0.0
    """Seconds since the build started."""
    done: bool = False
    """The build finished (successfully or not); a display clears its line."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildEvent:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def describe(self) -> str:
        """``[3/12] int8-static: calibrate ranges (00:07)``."""
        where = f"[{self.index}/{self.total}] " if self.total else ""
        text = f"{self.step}: {self.detail}" if self.detail else self.step
        minutes, seconds = divmod(int(self.elapsed_s), 60)
        return f"{where}{text} ({minutes:02d}:{seconds:02d})"


Listener = Callable[[BuildEvent], None]

_subscribers: list[Listener] = []
_subscribers_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Receive every build event of this process (from any thread); returns the unsubscribe call."""
    with _subscribers_lock:
        _subscribers.append(listener)

    def unsubscribe() -> None:
        with _subscribers_lock:
            if listener in _subscribers:
                _subscribers.remove(listener)

    return unsubscribe


def publish(event: BuildEvent) -> None:
    """Log the event and hand it to every subscriber; a failing subscriber never fails a build."""
    if event.done:
        log.info("%s: done (%.1f s)", event.label, event.elapsed_s)
    else:
        log.info("%s: %s", event.label, event.describe())
    with _subscribers_lock:
        listeners = list(_subscribers)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a display must not break the build it displays
            log.debug("progress listener %r failed", listener, exc_info=True)


# -- details from inside a step ---------------------------------------------------------------
DetailListener = Callable[[str], None]
_DETAIL: ContextVar[DetailListener | None] = ContextVar("model_manager_build_detail", default=None)


@contextmanager
def reporting(listener: DetailListener) -> Iterator[None]:
    """Send every :func:`detail` made inside the ``with`` block (this context) to ``listener``."""
    token = _DETAIL.set(listener)
    try:
        yield
    finally:
        _DETAIL.reset(token)


def detail_reporter() -> DetailListener:
    """:func:`detail` bound to this context's listener, for callbacks that arrive on other threads
    (TensorRT calls its progress monitor from its own threads, where the context is not set)."""
    listener = _DETAIL.get()

    def report(message: str) -> None:
        log.debug("build detail: %s", message)
        if listener is not None:
            listener(message)

    return report


def detail(message: str) -> None:
    """Report what the current build step is doing (a no-op outside a build)."""
    log.debug("build detail: %s", message)
    listener = _DETAIL.get()
    if listener is not None:
        listener(message)
