"""A process that loads an optimized model and SIGKILLs itself at a chosen moment of the build.

``python -m tests.reliability.crash_driver CACHE_DIR STRATEGY MOMENT`` (run by test_crash.py).
Moments are named by what the build is doing when the process dies:

- ``lock-taken``: the key's lock is held, no temporary folder yet;
- ``step:N``: the parent just received the N-th build step from its build process (1 the FP32
  reference, 2 export, 3 quant-ready copy, 4 calibration, 5 the everything-INT8 Q/DQ model, 6 the
  float-layer search, 7 the served Q/DQ model, 8 comparison with FP32, 9 eager's check, 10
  timing); the build process dies with its parent;
- ``manifest-partial``: half of the manifest is written into the temporary folder;
- ``manifest-written``: the manifest is complete in the temporary folder, not yet renamed;
- ``published``: the entry was renamed into place, the lock not yet released;
- ``worker:N``: only the build process is killed, at its N-th step; this process must survive,
  get an EngineBuildError, and then serve the model from a second, complete build.

The last line on stdout is JSON with what happened (for moments where the process survives).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import psutil

from model_manager import ModelConfig, ModelManager
from model_manager.cache import store
from model_manager.config import QualityGates
from model_manager.errors import EngineBuildError
from model_manager.progress import BuildEvent, subscribe

MODEL = ("super_resolution", "espcn-x2")
# Trained ESPCN loses 1-4 dB to INT8; the gate is lowered so the INT8 build is served here.
GATES = QualityGates(int8_min_psnr=25.0)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class StepTrigger:
    """Calls ``action`` once, when the first build reports its ``n``-th step on the progress channel."""

    def __init__(self, n: int, action: Any) -> None:
        self.n, self.action, self.fired = n, action, False

    def __call__(self, event: BuildEvent) -> None:
        if event.index == self.n and not event.detail and not event.done and not self.fired:
            self.fired = True
            self.action()


def kill_build_workers() -> None:
    for child in psutil.Process().children(recursive=True):
        child.send_signal(signal.SIGKILL)


def install(moment: str) -> None:
    """Arrange for this process (or its build process) to be killed at ``moment``."""
    kind, _, arg = moment.partition(":")
    if kind in ("step", "worker"):
        action = die if kind == "step" else kill_build_workers
        subscribe(StepTrigger(int(arg), action))
    elif kind == "lock-taken":
        store.ArtifactCache._build_and_publish = _before(store.ArtifactCache._build_and_publish)  # type: ignore[method-assign]
    elif kind == "published":
        store.ArtifactCache._build_and_publish = _after(store.ArtifactCache._build_and_publish)  # type: ignore[method-assign]
    elif kind == "manifest-written":
        store.write_manifest = _after(store.write_manifest)
    elif kind == "manifest-partial":
        store.write_manifest = _partial_manifest
    else:
        raise SystemExit(f"unknown moment {moment!r}")


def _before(fn: Any) -> Any:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        die()

    return wrapped


def _after(fn: Any) -> Any:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        await fn(*args, **kwargs)
        die()

    return wrapped


async def _partial_manifest(folder: Path, manifest: Any) -> None:
    text = manifest.to_json()
    tmp = folder / f".manifest.json.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        os.fsync(f.fileno())
    die()


async def main(cache_dir: str, strategy: str, moment: str) -> dict[str, Any]:
    install(moment)
    config = ModelConfig(cache_dir=cache_dir, device="cpu", quality=GATES, lock_timeout_s=120, num_threads=1)
    report: dict[str, Any] = {"errors": []}
    async with ModelManager(config) as manager:
        for _attempt in range(2):
            try:
                runner = await manager.load_optimized_model(*MODEL, optimization=strategy)
            except EngineBuildError as exc:
                report["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            report["served"] = runner.info.strategy
            report["cache_hit"] = runner.info.cache_hit
            break
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))), flush=True)
