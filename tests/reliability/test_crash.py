"""Crash during build: a process killed with SIGKILL at 10 moments of an INT8 build.

Promises checked after every kill:
- no corrupt entry is ever served: whatever is on disk is either absent or a complete, verified entry;
- the build process dies with its killed parent (no orphan keeps writing into the cache);
- the dead process's lock is free at once (fcntl locks die with their process), and the next load
  takes it over, removes the dead build's temporary folder and serves a correct runner;
- a build process killed on its own gives the application an EngineBuildError naming SIGKILL,
  and the same application then serves the model.
The build is ``int8-static`` of the shipped espcn-x2: export, calibration, quantization, comparison,
timing and publish, so the moments cover every phase (tests/reliability/crash_driver.py names them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from filelock import FileLock

from model_manager import ModelConfig, ModelManager
from model_manager.cache import ArtifactCache, prune
from model_manager.cache.manifest import read_manifest, verify_files
from model_manager.cache.store import LOCKS, TMP_PREFIX
from model_manager.optim.quality import compare
from model_manager.samples import sample_batch

from .crash_driver import GATES, MODEL

ROOT = Path(__file__).resolve().parents[2]
STRATEGY = "int8-static"
# Steps the build process reports for int8-static (see the driver's docstring): 2 export,
# 4 calibration, 5 writing the everything-INT8 Q/DQ model, 6 the float-layer search, 8 comparing
# with FP32, 10 timing.
KILL_MOMENTS = [
    "lock-taken",
    "step:2",
    "step:4",
    "step:5",
    "step:6",
    "step:8",
    "step:10",
    "manifest-partial",
    "manifest-written",
    "published",
]
FAST = {
    "step:4",
    "manifest-written",
}  # and step:5 in the housekeeping test below  # run in CI; the rest with `pytest -m reliability`


def _params(moments: list[str]) -> list:
    return [m if m in FAST else pytest.param(m, marks=pytest.mark.soak) for m in moments]


def run_driver(cache: Path, moment: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the crash driver; the tag in its environment finds any process it left behind."""
    tag = uuid.uuid4().hex
    env = {**os.environ, "MM_CRASH_TAG": tag, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.crash_driver", str(cache), STRATEGY, moment],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    return proc, tag


def survivors(tag: str) -> list[psutil.Process]:
    """Processes still alive that inherited the driver's tag."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("MM_CRASH_TAG") == tag and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def assert_nothing_corrupt_is_published(cache: Path) -> int:
    """Every published entry (a folder with a manifest outside .tmp-/.locks/.quarantine) verifies."""
    published = 0
    for manifest in cache.rglob("manifest.json"):
        folder = manifest.parent
        if any(part.startswith(".") for part in folder.relative_to(cache).parts):
            continue
        assert await verify_files(folder, await read_manifest(folder)) == [], folder
        published += 1
    return published


def assert_locks_are_free(cache: Path) -> None:
    for lock_file in (cache / LOCKS).glob("*.lock"):
        lock = FileLock(str(lock_file))
        lock.acquire(timeout=0)  # raises Timeout if a dead process still held it
        lock.release()


async def load_and_check(cache: Path) -> dict:
    """Load in this process (taking over after the crash) and compare with eager FP32."""
    config = ModelConfig(cache_dir=cache, device="cpu", quality=GATES, lock_timeout_s=120, num_threads=1)
    async with ModelManager(config) as manager:
        runner = await manager.load_optimized_model(*MODEL, optimization=STRATEGY)
        module = await manager.load_real_model(*MODEL)
        descriptor = runner.descriptor
        (x,) = sample_batch(descriptor, (96, 96), 1)
        with torch.no_grad():
            reference = module(torch.from_numpy(x)).numpy()
        q = compare(reference, np.asarray(runner(x)), descriptor.output.value_range)
        return {"strategy": runner.info.strategy, "hit": runner.info.cache_hit, "psnr": q.psnr_db}


@pytest.mark.slow
@pytest.mark.parametrize("moment", _params(KILL_MOMENTS))
async def test_a_build_killed_at_any_moment_leaves_a_cache_that_recovers(tmp_path: Path, moment: str) -> None:
    """SIGKILL of the application at ``moment``: nothing corrupt served, no orphan, next load correct."""
    cache = tmp_path / "cache"
    proc, tag = run_driver(cache, moment)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert survivors(tag) == [], "the build process outlived its killed parent"
    published = await assert_nothing_corrupt_is_published(cache)
    assert published == (1 if moment == "published" else 0)
    assert_locks_are_free(cache)

    result = await load_and_check(cache)
    assert result["strategy"] == STRATEGY
    assert result["hit"] is (moment == "published")
    assert result["psnr"] >= GATES.int8_min_psnr, result
    assert not list(cache.rglob(f"{TMP_PREFIX}*")), "a dead build's temporary folder was left behind"
    assert await assert_nothing_corrupt_is_published(cache) == 1


@pytest.mark.slow
async def test_a_killed_build_process_is_an_error_and_the_application_keeps_serving(tmp_path: Path) -> None:
    """SIGKILL of the build process only: EngineBuildError naming the signal, then a served model."""
    cache = tmp_path / "cache"
    proc, tag = run_driver(cache, "worker:3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["errors"]) == 1 and "died with SIGKILL" in report["errors"][0], report
    assert report["served"] == STRATEGY and report["cache_hit"] is False
    assert survivors(tag) == []
    assert await assert_nothing_corrupt_is_published(cache) == 1
    assert not list(cache.rglob(f"{TMP_PREFIX}*"))


async def test_housekeeping_removes_what_a_dead_build_left_but_not_a_running_build(tmp_path: Path) -> None:
    """`cache prune` deletes a killed build's temporary folder once its lock is free, never before."""
    cache = tmp_path / "cache"
    proc, _tag = run_driver(cache, "step:5")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (left,) = list(cache.rglob(f"{TMP_PREFIX}*"))
    (lock_file,) = list((cache / LOCKS).glob("*.lock"))
    running = FileLock(str(lock_file))
    running.acquire(timeout=0)  # as if a live process were building this key again
    try:
        assert await prune(ArtifactCache(cache), max_bytes=1 << 40) == []
        assert left.is_dir()
    finally:
        running.release()
    removed = await prune(ArtifactCache(cache), max_bytes=1 << 40)
    assert [r["entry"] for r in removed] == [str(left.relative_to(cache))] and removed[0]["size_bytes"] > 0
    assert not left.exists()
