"""The build progress display: :mod:`model_manager.progress` events on stderr while a command works.

On a terminal it is one line rewritten in place (``\\r`` + clear to the end of the line) with the
label, step k/n, the step's latest detail and the elapsed time, ticking while a step runs; the
line is cleared when the build is done and when the command ends, so a frame bar drawn after it
(``run`` on a video) starts on a clean line. Elsewhere (a log, a pipe, a test) it writes one
plain line per new step, not per detail, and one when the build is done.

Events come from any thread (builds run in worker threads and child processes); everything here
happens under one lock.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from .. import progress
from ..progress import BuildEvent

CLEAR_LINE = "\r\x1b[K"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def _fit(line: str, width: int) -> str:
    """``line`` cut to ``width`` in the middle of the step's text, keeping the elapsed time at its end."""
    if len(line) <= width:
        return line
    cut = line.rfind(" (")
    tail = line[cut:] if cut > 0 else ""
    return line[: max(0, width - len(tail) - 3)] + "..." + tail


class BuildDisplay:
    """A :mod:`model_manager.progress` listener that shows build steps on ``stream``."""

    def __init__(self, stream: TextIO, live: bool | None = None, refresh_s: float = 0.5) -> None:
        self.stream = stream
        self.live = is_terminal(stream) if live is None else live
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._active: dict[str, tuple[BuildEvent, float]] = {}
        """label -> (its latest event, when it came): the builds in progress."""
        self._shown = False
        self._line = ""
        """The text on the terminal line now (not written again when nothing changed)."""
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the listener --------------------------------------------------------------------------
    def __call__(self, event: BuildEvent) -> None:
        with self._lock:
            previous = self._active.get(event.label)
            if event.done:
                self._active.pop(event.label, None)
            else:
                self._active[event.label] = (event, time.monotonic())
            if self.live:
                self._redraw()
                self._start_ticker()
            elif event.done:
                if previous is not None:
                    self._write(f"{event.label} done ({_elapsed(event.elapsed_s)})\n")
            elif previous is None or (previous[0].index, previous[0].total) != (event.index, event.total):
                self._write(f"{event.label} {event.describe()}\n")

    def clear(self) -> None:
        """Forget the builds in progress and clear the line (a frame bar is about to start)."""
        with self._lock:
            self._active.clear()
            if self._shown:
                self._write(CLEAR_LINE)
                self._shown = False

    def close(self) -> None:
        """Stop ticking and clear the line (the command has ended, however it ended)."""
        self._stop.set()
        ticker = self._ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(timeout=2 * self.refresh_s + 1)
        self.clear()

    # -- the terminal line ---------------------------------------------------------------------
    def _redraw(self) -> None:
        """Show the most recent event of the builds in progress, its time brought up to now."""
        if not self._active:
            if self._shown:
                self._write(CLEAR_LINE)
                self._shown = False
            return
        event, received = max(self._active.values(), key=lambda item: item[1])
        now = dataclasses.replace(event, elapsed_s=event.elapsed_s + time.monotonic() - received)
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        line = _fit(f"{event.label} {now.describe()}", width)
        if not self._shown or line != self._line:
            self._write(CLEAR_LINE + line)
            self._shown, self._line = True, line

    def _start_ticker(self) -> None:
        if self._ticker is None and not self._stop.is_set():
            self._ticker = threading.Thread(target=self._tick, name="model-manager-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh_s):
            with self._lock:
                if self._active:
                    self._redraw()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: the build goes on without a display
            pass


_showing: list[BuildDisplay] = []
"""The displays of :func:`showing_builds` blocks now running (one, from the CLI)."""


@contextmanager
def showing_builds(stream: TextIO, enabled: bool = True, live: bool | None = None) -> Iterator[None]:
    """Show every build published while the block runs on ``stream``; the line is cleared at the end."""
    if not enabled:
        yield
        return
    display = BuildDisplay(stream, live=live)
    unsubscribe = progress.subscribe(display)
    _showing.append(display)
    try:
        yield
    finally:
        _showing.remove(display)
        unsubscribe()
        display.close()


def clear_build_line() -> None:
    """Clear the build line now, before another display (a frame bar) takes the terminal's last line.

    A build that is still publishing draws its line again; builds are over when a runner is loaded.
    """
    for display in list(_showing):
        display.clear()
