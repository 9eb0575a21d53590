"""Disk trouble: a cache that cannot be written, and a write that fails for lack of space.

Promises:
- a write refused by the disk (here ``RLIMIT_FSIZE``: EFBIG, as ENOSPC would be) at any of the
  three places a build writes (the weights handed to the build process, the artifact inside the
  build process, the artifact of an in-process build) is one ``CacheWriteError`` naming the folder
  and what the disk said; the application process survives and can still serve the model eagerly;
  the cache is left consistent (no entry, no temporary folder) and works once the disk does;
- a read-only cache serves: an empty one builds into a private temporary folder (warned, nothing
  written to the cache, the folder removed on close); a populated one serves its hits unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from model_manager import ModelConfig, ModelManager
from model_manager.cache import ArtifactCache, verify_all
from model_manager.cache.store import QUARANTINE, TMP_PREFIX
from model_manager.samples import sample_batch

ROOT = Path(__file__).resolve().parents[2]
MODEL = ("super_resolution", "espcn-x2")
SOAK = pytest.mark.soak

_LIMITED = textwrap.dedent("""
    import asyncio, json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from model_manager import ModelConfig, ModelManager

    async def main(cache, in_subprocess):
        config = ModelConfig(cache_dir=cache, device="cpu", num_threads=1, build_in_subprocess=in_subprocess)
        report = {}
        async with ModelManager(config) as m:
            try:
                await m.load_optimized_model("super_resolution", "espcn-x2", "onnx")
            except Exception as exc:
                report["error"] = [c.__name__ for c in type(exc).__mro__]
                report["message"] = str(exc)
            eager = await m.load_optimized_model("super_resolution", "espcn-x2", "none")
            report["eager_backend"] = eager.info.backend
        print(json.dumps(report))

    asyncio.run(main(sys.argv[1], sys.argv[3] == "1"))
""")


def weights_bytes() -> int:
    """Size of the default model's weights as the build process receives them (safetensors)."""
    from safetensors.torch import save

    from model_manager.zoo import default_entries

    entry = next(e for e in default_entries() if (e.model_type, e.name) == MODEL)
    state = entry.load().module.state_dict()
    return len(save({k: v.contiguous() for k, v in state.items()}))


def limits() -> list:
    w = weights_bytes()
    # The ONNX file holds the same float32 weights plus the graph, so it is larger than w + 64.
    return [
        pytest.param(w + 64, True, "the onnx build files", id="artifact-in-build-process"),
        pytest.param(
            64 * 1024, True, "the weights for the build process", id="weights-to-build-process", marks=SOAK
        ),
        pytest.param(64 * 1024, False, "the onnx build files", id="artifact-in-process", marks=SOAK),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("limit", "in_subprocess", "what"), limits())
async def test_a_write_refused_by_the_disk_is_a_clear_error_and_leaves_the_cache_consistent(
    tmp_path: Path, limit: int, in_subprocess: bool, what: str
) -> None:
    """RLIMIT_FSIZE in the application: CacheWriteError naming the place; then a clean rebuild."""
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(cache), str(limit), "1" if in_subprocess else "0"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report.get("error", [None])[0] == "CacheWriteError", report
    assert "CacheError" in report["error"]
    assert f"cannot write {what}" in report["message"] and "errno 27" in report["message"], report
    assert report["eager_backend"] == "torch"  # the application still serves the model
    assert not list(cache.rglob("manifest.json")) and not list(cache.rglob(f"{TMP_PREFIX}*"))
    assert not (cache / QUARANTINE).exists()

    async with ModelManager(ModelConfig(cache_dir=cache, device="cpu", num_threads=1)) as manager:
        runner = await manager.load_optimized_model(*MODEL, optimization="onnx")
        assert (
            not runner.info.cache_hit
            and np.isfinite(runner(*sample_batch(runner.descriptor, (32, 32)))).all()
        )
    assert [r for r in await verify_all(ArtifactCache(cache)) if not r.get("ok", True)] == []


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Read-only for this user, root included (chattr +i; chmod for other users)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
        return
    if subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)


@pytest.mark.slow
async def test_an_empty_read_only_cache_serves_from_a_temporary_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing can be written: the build goes to a private temporary folder, warned, removed on close."""
    cache = tmp_path / "cache"
    cache.mkdir()
    with read_only(cache):
        async with ModelManager(ModelConfig(cache_dir=cache, device="cpu", num_threads=1)) as manager:
            runner = await manager.load_optimized_model(*MODEL, optimization="onnx")
            (x,) = sample_batch(runner.descriptor, (32, 32))
            assert runner(x).shape == (1, 3, 64, 64)
            temporary = Path(runner.info.artifact_path)
            assert not temporary.is_relative_to(cache) and temporary.is_dir()
            assert any("not writable" in n for n in runner.info.notes)
        assert "not writable" in caplog.text
        assert list(cache.iterdir()) == []
        assert not temporary.exists()


async def test_a_populated_read_only_cache_serves_its_hits_unchanged(tmp_path: Path) -> None:
    """Hits need no write: served from the read-only cache, checksums still verified, nothing changed."""
    cache = tmp_path / "cache"
    config = ModelConfig(cache_dir=cache, device="cpu", num_threads=1)
    async with ModelManager(config) as manager:
        first = await manager.load_optimized_model(*MODEL, optimization="onnx")
        (x,) = sample_batch(first.descriptor, (32, 32))
        expected = first(x)
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    with read_only(cache):
        async with ModelManager(config) as manager:
            runner = await manager.load_optimized_model(*MODEL, optimization="onnx")
            assert runner.info.cache_hit and runner.info.artifact_path == first.info.artifact_path
            np.testing.assert_array_equal(runner(x), expected)
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == before
