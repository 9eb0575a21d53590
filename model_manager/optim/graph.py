"""The build graph: named steps with typed intermediates, each made at most once per build.

A :class:`Step` is "what from what" (as Polygraphy's loaders are): a name, the steps it needs,
and a function of the :class:`BuildContext` that makes its value in a folder of its own. The
context runs a step the first time someone asks for it (``ctx.get(FP32_ONNX)``) and hands the same
value to everyone after: the FP32 export, the calibration crops and ranges, the Q/DQ model are
made once however many candidates consume them. Unlike Polygraphy's loaders, it memoises.

A step with an ``identity`` is content-addressed: its fingerprint is the SHA-256 of its name, its
own identity (weights hash, export settings, versions, ...) and its needs' fingerprints. A step
that makes files (a :class:`Files` value) and has a fingerprint is looked up in the cache's
intermediate store first and published there after, so another build of the same weights (another
strategy, a later ``auto``) does not export the same FP32 ONNX again.

Every step run, reuse or injection is recorded in the :class:`BuildReport` (which the manifest
keeps) and published as a progress event (k of n, elapsed) on ``model_manager.progress``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from torch import nn

from ..cache.intermediates import IntermediateStore
from ..descriptor import ModelDescriptor
from ..progress import BuildEvent, reporting
from .settings import BuildSettings

T = TypeVar("T")
GRAPH_FORMAT = 1
"""Part of every fingerprint: bump when a step's output changes for the same inputs."""


@dataclass(frozen=True)
class Files:
    """Files a step made, in one folder; ``main`` is the first (the model file)."""

    folder: Path
    names: tuple[str, ...]

    @property
    def main(self) -> Path:
        return self.folder / self.names[0]

    def paths(self) -> list[Path]:
        return [self.folder / n for n in self.names]

    def copy_to(self, folder: Path, rename: Mapping[str, str] | None = None) -> list[str]:
        """Copy the files into ``folder`` (renamed as given); returns the names written there."""
        written = []
        for name in self.names:
            target = (rename or {}).get(name, name)
            shutil.copyfile(self.folder / name, folder / target)
            written.append(target)
        return written


@dataclass(frozen=True, eq=False)
class Step(Generic[T]):
    """One node of the graph: ``run(ctx, folder)`` makes its value from its needs (via ``ctx.get``)."""

    name: str
    describe: str
    run: Callable[[BuildContext, Path], T]
    needs: tuple[Step[Any], ...] = ()
    identity: Callable[[BuildContext], Mapping[str, Any] | None] | None = None
    """What the value depends on besides its needs; None (or returning None): not content-addressed."""
    quiet: bool = False
    """Too quick to report as a step of its own (not counted in k of n)."""
    reusable: bool = False
    """Kept in the cache's intermediate store and reused by later builds (Files with a fingerprint)."""

    def closure(self) -> list[Step[Any]]:
        """This step and everything it needs, needs first."""
        return closure([self])


def closure(steps: Iterable[Step[Any]]) -> list[Step[Any]]:
    """The steps and all they need, each once, every step after its needs."""
    order: list[Step[Any]] = []
    seen: set[int] = set()

    def visit(step: Step[Any]) -> None:
        if id(step) in seen:
            return
        seen.add(id(step))
        for need in step.needs:
            visit(need)
        order.append(step)

    for s in steps:
        visit(s)
    return order


@dataclass
class StepRecord:
    """How one step's value came to be in this build."""

    name: str
    outcome: str
    """``made``, ``reused`` (from the intermediate store) or ``provided`` (given by the caller)."""
    seconds: float
    fingerprint: str | None = None


@dataclass
class BuildReport:
    """Every step of a build, in order, and how often each intermediate was made."""

    steps: list[StepRecord] = field(default_factory=list)

    def made(self, name: str) -> int:
        """How many times ``name`` was computed (not reused) in this build: 0 or 1 by design."""
        return sum(1 for r in self.steps if r.name == name and r.outcome == "made")

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for r in self.steps:
            counts.setdefault(r.name, {}).setdefault(r.outcome, 0)
            counts[r.name][r.outcome] += 1
        return {"steps": [asdict(r) for r in self.steps], "counts": counts}


class BuildContext:
    """One build: the FP32 module, its descriptor and settings, and every intermediate made so far."""

    def __init__(
        self,
        module: nn.Module,
        descriptor: ModelDescriptor,
        settings: BuildSettings,
        scratch: Path,
        *,
        store: IntermediateStore | None = None,
        provided: Mapping[Step[Any], Any] | None = None,
        events: Callable[[BuildEvent], None] | None = None,
        label: str = "",
        total_steps: int = 0,
    ) -> None:
        self.module = module
        self.descriptor = descriptor
        self.settings = settings
        self.scratch = scratch
        self.store = store
        self.report = BuildReport()
        self.notes: dict[str, dict[str, Any]] = {}
        """What a candidate's build recorded for its result (``note``), by candidate name."""
        self.label = label or f"{descriptor.model_type}/{descriptor.architecture}"
        self.total_steps = total_steps
        self._values: dict[int, Any] = {id(s): v for s, v in (provided or {}).items()}
        self._provided = {id(s) for s in (provided or {})}
        self._fingerprints: dict[int, str | None] = {}
        self._failed: dict[int, Exception] = {}
        self._events = events
        self._index = 0
        self._started = time.perf_counter()
        self._current = ""

    # -- values -----------------------------------------------------------------------------
    def get(self, step: Step[T]) -> T:
        """The step's value, made (or reused, or taken as provided) the first time it is asked for."""
        key = id(step)
        if key in self._values:
            if key in self._provided and not any(r.name == step.name for r in self.report.steps):
                self.report.steps.append(StepRecord(step.name, "provided", 0.0))
            return self._values[key]
        if key in self._failed:  # a step that failed is not tried again by its next consumer
            raise self._failed[key]
        try:
            for need in step.needs:
                self.get(need)
            fingerprint = self.fingerprint(step)
            started = time.perf_counter()
            value, outcome = self._reuse(step, fingerprint)
            if outcome is None:
                if not step.quiet:
                    self.begin(step.describe, step.name)
                value = step.run(self, self._folder(step))
                outcome = "made"
                if step.reusable and isinstance(value, Files) and fingerprint and self.store is not None:
                    self.store.publish(step.name, fingerprint, value.folder, list(value.names))
        except Exception as exc:
            self._failed[key] = exc
            raise
        self.report.steps.append(
            StepRecord(step.name, outcome, round(time.perf_counter() - started, 3), fingerprint)
        )
        self._values[key] = value
        return value

    def note(self, candidate: str, **values: Any) -> None:
        """Record details of a candidate's build (the manifest keeps them with its result)."""
        self.notes.setdefault(candidate, {}).update(values)

    def fingerprint(self, step: Step[Any]) -> str | None:
        """SHA-256 of what the step's value depends on; None when it is not content-addressed."""
        key = id(step)
        if key not in self._fingerprints:
            self._fingerprints[key] = self._compute_fingerprint(step)
        return self._fingerprints[key]

    def _compute_fingerprint(self, step: Step[Any]) -> str | None:
        if step.identity is None or id(step) in self._provided:
            return None
        needs = [self.fingerprint(n) for n in step.needs]
        if any(n is None for n in needs):
            return None
        own = step.identity(self)
        if own is None:
            return None
        data = {"graph": GRAPH_FORMAT, "step": step.name, "own": dict(own), "needs": needs}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_jsonable)
        return hashlib.sha256(text.encode()).hexdigest()

    def _reuse(self, step: Step[T], fingerprint: str | None) -> tuple[Any, str | None]:
        if not step.reusable or fingerprint is None or self.store is None:
            return None, None
        found = self.store.find(step.name, fingerprint)
        if found is None:
            return None, None
        folder, names = found
        self.begin(f"{step.describe} (reused from an earlier build)", step.name)
        return Files(folder, names), "reused"

    def _folder(self, step: Step[Any]) -> Path:
        folder = self.scratch / step.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- progress -----------------------------------------------------------------------------
    def begin(self, what: str, name: str = "") -> None:
        """Start the next step: k of n, published with the elapsed time."""
        self._index += 1
        self.total_steps = max(self.total_steps, self._index)
        self._current = f"{name}: {what}" if name and not what.startswith(name) else what
        self._emit(BuildEvent(self.label, self._index, self.total_steps, self._current, "", self.elapsed))

    def detail(self, message: str) -> None:
        """Something the current step is doing (from ``progress.detail`` inside builders)."""
        self._emit(
            BuildEvent(self.label, self._index, self.total_steps, self._current, message, self.elapsed)
        )

    def finish(self) -> None:
        self._emit(BuildEvent(self.label, self._index, self.total_steps, "done", "", self.elapsed, True))

    def reporting(self) -> Any:
        """A context manager routing ``progress.detail`` calls to this build's current step."""
        return reporting(self.detail)

    @property
    def elapsed(self) -> float:
        return round(time.perf_counter() - self._started, 3)

    def _emit(self, event: BuildEvent) -> None:
        if self._events is not None:
            self._events(event)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"a fingerprint field of type {type(value).__name__} is not JSON-serialisable")
