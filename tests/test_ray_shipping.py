"""One build per key across nodes: a shipped cache entry (two cache folders stand for two nodes) and a
shared cache folder (the per-key file lock), with real builds on the CPU and a local Ray."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_manager import ModelConfig, ModelManager, ShapeRange
from model_manager.cache import MANIFEST_NAME
from model_manager.distributed import shipping
from model_manager.distributed.shipping import (
    ShippedEntry,
    build_once,
    pack_entry,
    receive,
    ship_to_ray,
    unpack_entry,
)
from model_manager.errors import CorruptEntryError, ModelInputError
from model_manager.samples import sample_batch

pytestmark = [pytest.mark.slow, pytest.mark.ray]

MODEL = ("super_resolution", "default")
# a small range keeps the real build (export, check against FP32, timing) quick on 2 cores
SHAPE = ShapeRange((128, 128), max_batch=1)


def _config(cache_dir: Path | str) -> ModelConfig:
    """A CPU config with a quick time budget and its own cache folder."""
    return ModelConfig(cache_dir=Path(cache_dir), device="cpu", auto_time_budget_s=0.2)


async def _load(cache_dir: Path | str, wait_for: Path | None = None) -> dict[str, Any]:
    """Load the onnx runner from ``cache_dir`` (after a two-party barrier if given) and run a sample."""
    if wait_for is not None:
        _barrier(wait_for)
    async with ModelManager(_config(cache_dir)) as manager:
        runner = await manager.load_optimized_model(*MODEL, "onnx", shape_range=SHAPE)
        output = await runner.infer(*sample_batch(runner.descriptor, (64, 64)))
        path = Path(str(runner.info.artifact_path))
        return {
            "hit": runner.info.cache_hit,
            "path": str(path),
            "key": runner.info.cache_key,
            "build_id": _build_id(path / MANIFEST_NAME),
            "output": np.asarray(output),
        }


def _barrier(folder: Path, parties: int = 2, timeout_s: float = 60.0) -> None:
    """Wait until ``parties`` processes have arrived, so the loads start together."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.05)


def _build_id(manifest: Path) -> str:
    """The build id recorded in a manifest file."""
    return str(json.loads(manifest.read_text())["build_id"])


def _receive_and_load(refs: list[Any], cache_dir: str) -> dict[str, Any]:
    """One node: receive the shipped entry into its own cache, then load it."""
    path = receive(refs[0], Path(cache_dir))
    assert path is not None
    arrived = (path / MANIFEST_NAME).read_bytes()
    return {**asyncio.run(_load(cache_dir)), "arrived": arrived, "received": str(path)}


def _load_shared(cache_dir: str, barrier: str) -> dict[str, Any]:
    """One node on the shared cache folder: load (building if nobody has) once both have arrived."""
    return asyncio.run(_load(cache_dir, Path(barrier)))


def _entries(root: Path) -> list[str]:
    """Entry folders (at entry depth, not hidden) under a cache root."""
    found = (p.relative_to(root) for p in root.glob("*/*/*/*") if p.is_dir())
    return sorted(r.as_posix() for r in found if not any(part.startswith(".") for part in r.parts))


def _leftovers(root: Path) -> list[Path]:
    """Temporary folders left anywhere under a cache root."""
    return [p for p in root.rglob(".tmp-*")] if root.exists() else []


def _flip(data: bytes) -> bytes:
    """The bytes with one byte inverted."""
    return data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ShippedEntry]:
    """Cache A with the real onnx entry, built once for the module, and that entry packed."""
    root = tmp_path_factory.mktemp("node-a") / "cache"
    shipped = asyncio.run(build_once(_config(root), *MODEL, "onnx", shape_range=SHAPE))
    assert shipped is not None
    return root, shipped


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """One local Ray for the module's Ray tests."""
    ray = pytest.importorskip("ray")
    # the tasks below are this module's functions: send them by value, whatever the workers' sys.path
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


async def test_an_entry_packed_in_cache_a_is_a_cache_hit_in_cache_b(
    built: tuple[Path, ShippedEntry], tmp_path: Path
) -> None:
    """Unpacked into B, the same key loads as a hit with A's manifest bytes and A's output; no build in B."""
    root_a, shipped = built
    root_b = tmp_path / "node-b"
    path = unpack_entry(root_b, shipped)
    assert path == root_b / shipped.relpath
    assert (
        (path / MANIFEST_NAME).read_bytes()
        == shipped.files[MANIFEST_NAME]
        == (root_a / shipped.relpath / MANIFEST_NAME).read_bytes()
    )
    assert {p.name: p.read_bytes() for p in path.iterdir()} == shipped.files
    assert {oct(p.stat().st_mode & 0o777) for p in path.iterdir()} == {"0o600"}
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    assert shipped.digest() == hashlib.sha256(shipped.files[MANIFEST_NAME]).hexdigest()
    on_a, on_b = await _load(root_a), await _load(root_b)
    assert on_b["hit"] is True and on_b["path"] == str(path)
    assert on_b["key"] == on_a["key"] and on_b["build_id"] == on_a["build_id"]
    np.testing.assert_allclose(on_b["output"], on_a["output"], rtol=0, atol=1e-6)
    assert _entries(root_b) == [shipped.relpath] and not _leftovers(root_b)
    assert not (root_b / ".intermediates").exists()  # a build would have left its intermediates


def test_a_corrupted_file_in_transit_is_refused_and_nothing_is_published(
    built: tuple[Path, ShippedEntry], tmp_path: Path
) -> None:
    """A flipped byte: the error names the file and both SHA-256s; no entry, no temporary folder."""
    _, shipped = built
    name = next(n for n in shipped.files if n != MANIFEST_NAME)
    bad = _flip(shipped.files[name])
    corrupted = dataclasses.replace(shipped, files={**shipped.files, name: bad})
    expected = hashlib.sha256(shipped.files[name]).hexdigest()
    got = hashlib.sha256(bad).hexdigest()
    root = tmp_path / "node-b"
    with pytest.raises(CorruptEntryError, match=f"{name}: expected sha256 {expected} .*got sha256 {got}"):
        unpack_entry(root, corrupted)
    extra = dataclasses.replace(shipped, files={**shipped.files, "evil.sh": b"#!/bin/sh\n"})
    with pytest.raises(CorruptEntryError, match="evil.sh is not in the manifest"):
        unpack_entry(root, extra)
    forged = dataclasses.replace(
        shipped, files={**shipped.files, MANIFEST_NAME: _flip(shipped.files[MANIFEST_NAME])}
    )
    with pytest.raises(CorruptEntryError, match="manifest"):
        unpack_entry(root, forged)
    assert _entries(root) == [] and not _leftovers(root)


def test_unpacking_twice_is_a_no_op_and_escaping_relpaths_are_refused(
    built: tuple[Path, ShippedEntry], tmp_path: Path
) -> None:
    """The second unpack leaves the entry as it was; '..', absolute and shallow relpaths are refused."""
    _, shipped = built
    root = tmp_path / "node-b"
    path = unpack_entry(root, shipped)
    before = {p.name: p.stat().st_ino for p in path.iterdir()}
    assert unpack_entry(root, shipped) == path
    assert {p.name: p.stat().st_ino for p in path.iterdir()} == before and not _leftovers(root)
    for relpath in ("../../../../x", f"a/../{shipped.relpath}", "/etc/x/y/z", "super_resolution/x"):
        with pytest.raises(ModelInputError, match="relpath"):
            unpack_entry(root, ShippedEntry(relpath, shipped.files))
    moved = ShippedEntry(shipped.relpath.replace("onnx-", "fp16-"), shipped.files)
    with pytest.raises(CorruptEntryError, match="the manifest's key belongs at"):
        unpack_entry(root, moved)
    assert _entries(root) == [shipped.relpath]


def test_a_corrupt_published_entry_is_quarantined_and_replaced(
    built: tuple[Path, ShippedEntry], tmp_path: Path
) -> None:
    """A node whose copy rotted gets the shipped one; the bad copy is moved aside, not deleted."""
    _, shipped = built
    root = tmp_path / "node-b"
    path = unpack_entry(root, shipped)
    name = next(n for n in shipped.files if n != MANIFEST_NAME)
    (path / name).write_bytes(_flip(shipped.files[name]))
    assert unpack_entry(root, shipped) == path
    assert (path / name).read_bytes() == shipped.files[name]
    reasons = list((root / ".quarantine").rglob("QUARANTINE_REASON.txt"))
    assert len(reasons) == 1 and name in reasons[0].read_text()


def test_an_entry_published_meanwhile_is_kept_and_ours_dropped(
    built: tuple[Path, ShippedEntry], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename finds another process's sound entry in place (a lock that did not hold): theirs stays."""
    _, shipped = built
    root = tmp_path / "node-b"
    path = unpack_entry(root, shipped)
    folder_inode = path.stat().st_ino
    real, calls = shipping._keep_existing, []

    def blind_once(cache: Any, final: Path, manifest: Any) -> bool:
        calls.append(final)
        return False if len(calls) == 1 else real(cache, final, manifest)

    monkeypatch.setattr(shipping, "_keep_existing", blind_once)
    assert unpack_entry(root, shipped) == path
    assert len(calls) == 2 and path.stat().st_ino == folder_inode
    assert _entries(root) == [shipped.relpath] and not _leftovers(root)


def test_pack_refuses_links_folders_outside_the_root_and_partial_entries(
    built: tuple[Path, ShippedEntry], tmp_path: Path
) -> None:
    """A symbolic link, a folder outside the cache, an entry without a manifest: each a clear error."""
    root_a, shipped = built
    with pytest.raises(ModelInputError, match="is not under the cache root"):
        pack_entry(tmp_path / "elsewhere", root_a / shipped.relpath)
    linked = tmp_path / "node-d"
    link = linked / shipped.relpath
    link.parent.mkdir(parents=True)
    link.symlink_to(root_a / shipped.relpath, target_is_directory=True)
    with pytest.raises(CorruptEntryError, match="is a symbolic link"):
        pack_entry(linked, link)
    partial = tmp_path / "node-e"
    folder = unpack_entry(partial, shipped)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(CorruptEntryError, match="no manifest"):
        pack_entry(partial, folder)


async def test_an_eager_strategy_has_nothing_to_ship(tmp_path: Path) -> None:
    """'none' runs the FP32 module directly: build_once gives None, which ships and arrives as None."""
    shipped = await build_once(_config(tmp_path / "cache"), *MODEL, "none")
    assert shipped is None and ship_to_ray(None) is None and receive(None, tmp_path / "b") is None
    assert not (tmp_path / "b").exists()


def test_through_ray_two_nodes_receive_one_build(
    built: tuple[Path, ShippedEntry], ray_session: Any, tmp_path: Path
) -> None:
    """Driver builds (cache A), ships through the object store; nodes B and C load hits, A's manifest."""
    root_a, shipped = built
    again = asyncio.run(build_once(_config(root_a), *MODEL, "onnx", shape_range=SHAPE))  # a hit on A
    assert again is not None and again.relpath == shipped.relpath
    assert {n: b for n, b in again.files.items() if n != MANIFEST_NAME} == {
        n: b for n, b in shipped.files.items() if n != MANIFEST_NAME
    }
    ref = ship_to_ray(again)
    task = ray_session.remote(num_cpus=1)(_receive_and_load)
    nodes = [str(tmp_path / "node-b"), str(tmp_path / "node-c")]
    results = ray_session.get([task.remote([ref], node) for node in nodes], timeout=300)
    on_a = asyncio.run(_load(root_a))
    for node, result in zip(nodes, results):
        assert result["hit"] is True and result["received"] == result["path"]
        assert result["arrived"] == again.files[MANIFEST_NAME] and result["build_id"] == on_a["build_id"]
        np.testing.assert_allclose(result["output"], on_a["output"], rtol=0, atol=1e-6)
        assert _entries(Path(node)) == [shipped.relpath] and not _leftovers(Path(node))
        assert not (Path(node) / ".intermediates").exists()


def test_through_ray_a_shared_cache_folder_builds_once(ray_session: Any, tmp_path: Path) -> None:
    """Two nodes on one shared folder load the same key at once: one builds, the other waits and hits."""
    shared, barrier = tmp_path / "shared", tmp_path / "barrier"
    task = ray_session.remote(num_cpus=1)(_load_shared)
    results = ray_session.get([task.remote(str(shared), str(barrier)) for _ in range(2)], timeout=300)
    assert sorted(r["hit"] for r in results) == [False, True]
    assert len({r["build_id"] for r in results}) == 1 and len({r["path"] for r in results}) == 1
    assert len(_entries(shared)) == 1 and not _leftovers(shared)
    np.testing.assert_allclose(results[0]["output"], results[1]["output"], rtol=0, atol=1e-6)
