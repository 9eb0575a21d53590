"""Concurrency: 3 processes x 4 coroutines x 2 models on an empty cache.

Promises: exactly one build per key (one manifest per model, one build id, no entry replaced or
quarantined); every one of the 24 callers gets a working runner; every caller of a model gets the
same output; no temporary folder is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model_manager.cache.store import QUARANTINE, TMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("espcn-x2", "compact-x4")
PROCESSES, COROUTINES = 3, 4

_CHILD = textwrap.dedent("""
    import asyncio, json, sys
    import numpy as np
    from model_manager import ModelConfig, ModelManager
    from model_manager.samples import sample_batch

    async def one(m, name):
        r = await m.load_optimized_model("super_resolution", name, "onnx")
        x = sample_batch(r.descriptor, (24, 32))[0]
        y = await r.infer(x)
        return dict(name=name, hit=r.info.cache_hit, key=r.info.cache_key, artifact=r.info.artifact_path,
                    shape=list(y.shape), finite=bool(np.isfinite(y).all()), checksum=float(y.sum()))

    async def main(cache, names, n):
        async with ModelManager(ModelConfig(cache_dir=cache, device="cpu", num_threads=1)) as m:
            calls = [one(m, name) for _ in range(n) for name in names]
            print(json.dumps(await asyncio.gather(*calls)))

    asyncio.run(main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])))
""")


def run_round(cache: Path) -> list[dict]:
    """Start the processes together and collect every caller's report."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", _CHILD, str(cache), ",".join(MODELS), str(COROUTINES)]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(PROCESSES)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def check_round(cache: Path, reports: list[list[dict]]) -> None:
    calls = [c for r in reports for c in r]
    assert len(calls) == PROCESSES * COROUTINES * len(MODELS)
    for name in MODELS:
        mine = [c for c in calls if c["name"] == name]
        assert all(c["finite"] for c in mine)
        assert len({c["key"] for c in mine}) == 1 and len({c["artifact"] for c in mine}) == 1
        assert len({c["checksum"] for c in mine}) == 1, "callers of one model got different outputs"
        builders = {i for i, r in enumerate(reports) if any(c["name"] == name and not c["hit"] for c in r)}
        assert len(builders) == 1, f"{name} was built by processes {sorted(builders)}"
    manifests = list(cache.rglob("manifest.json"))
    assert len(manifests) == len(MODELS)
    assert len({json.loads(m.read_text())["build_id"] for m in manifests}) == len(MODELS)
    assert not list(cache.rglob(f"{TMP_PREFIX}*")), "a temporary folder was left behind"
    assert not (cache / QUARANTINE).exists(), "an entry was replaced or quarantined"


@pytest.mark.slow
def test_three_processes_four_coroutines_two_models_build_each_key_once(tmp_path: Path) -> None:
    """24 concurrent loads of 2 models on an empty cache: one build per key, 24 working runners."""
    cache = tmp_path / "cache"
    check_round(cache, run_round(cache))


@pytest.mark.soak
@pytest.mark.parametrize("round_", range(4))
def test_the_race_repeated_on_fresh_caches(tmp_path: Path, round_: int) -> None:
    """The same race on a fresh cache, repeated (lock and single-flight timing differs per round)."""
    cache = tmp_path / f"cache{round_}"
    check_round(cache, run_round(cache))
