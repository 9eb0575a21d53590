"""Build progress as named steps: builders call :func:`step`, whoever runs the build listens.

A build runs for seconds to minutes in a child process; its parent shows a progress bar and logs
each step. Builders stay free of callback plumbing: :func:`reporting` installs a listener for the
current context and :func:`step` reports to it (a no-op when nobody listens).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

Listener = Callable[[str], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("model_manager_build_progress", default=None)


@contextmanager
def reporting(listener: Listener) -> Iterator[None]:
    """Send every :func:`step` made inside the ``with`` block to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def step(message: str) -> None:
    """Report that the build is starting ``message`` (e.g. "calibrate ranges on 8 crops")."""
    log.debug("build step: %s", message)
    listener = _LISTENER.get()
    if listener is not None:
        listener(message)
