"""Host memory policy: with it, a tensor allocated and freed on every call stops page-faulting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model_manager import host_memory

CHILD = """
import resource, sys, torch
from model_manager import ModelConfig, ModelManager
ModelManager(ModelConfig(cache_dir=sys.argv[1], keep_freed_memory=sys.argv[2] == "1"))

def call():  # what an eager forward does with each activation: allocate, fill, free
    x = torch.ones(2048, 4096)  # 32 MiB
    return float(x[0, 0])

for _ in range(3):
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    call()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_call(tmp_path: Path, keep: bool) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "1" if keep else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    host_memory._mallopt() is None, reason="the policy is glibc's mallopt; this C library is not glibc"
)
def test_the_manager_keeps_freed_memory_and_calls_stop_page_faulting(tmp_path: Path) -> None:
    returned = _faults_per_call(tmp_path, keep=False)
    kept = _faults_per_call(tmp_path, keep=True)
    assert returned > 1000  # glibc default: 32 MiB mmapped and unmapped per call (8192 pages)
    assert kept < 0.01 * returned


def test_keep_freed_memory_answers_once_and_the_same() -> None:
    first = host_memory.keep_freed_memory()
    assert isinstance(first, bool) and host_memory.keep_freed_memory() is first
    assert first == (host_memory._mallopt() is not None)
