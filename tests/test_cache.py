"""ArtifactCache on a real folder: keys, layout, manifests, single-flight, corruption, housekeeping."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from model_manager import CacheError
from model_manager.cache import (
    ArtifactCache,
    BuildOutput,
    CacheKey,
    clear,
    make_key,
    prune,
    scan,
    toolchain_versions,
    verify_all,
)
from model_manager.cache.manifest import MANIFEST_FORMAT, read_manifest


def _key(weights: str = "ab" * 32, **changes) -> CacheKey:
    fields = dict(
        architecture="ESPCN",
        hyperparameters={"channels": 3},
        precision="fp32",
        profile={"opt": {"input": [1, 3, 256, 256]}},
        export={"opset": 17},
        device={"kind": "cpu"},
    )
    fields.update(changes)
    return make_key("super_resolution", "espcn-x2", weights, "onnx", **fields)


class Builder:
    """A real builder: writes two files; counts how often it ran."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self, folder: Path) -> BuildOutput:
        self.calls += 1
        await asyncio.sleep(self.delay)
        (folder / "model.onnx").write_bytes(os.urandom(4096))
        (folder / "extra.bin").write_bytes(b"x" * 100)
        if self.fail:
            raise RuntimeError("builder failed half-way")
        return BuildOutput(
            files=["model.onnx", "extra.bin"],
            backend="onnxruntime",
            precision="fp32",
            quality={"psnr_db": 99.0},
            decision={"chosen": "onnx"},
        )


def _no_temp_left(root: Path) -> bool:
    return not [p for p in root.rglob(".tmp-*")]


async def test_build_once_then_hit_with_a_browsable_layout(tmp_path: Path) -> None:
    cache, key, build = ArtifactCache(tmp_path), _key(), Builder()
    first = await cache.get_or_build(key, build)
    second = await cache.get_or_build(key, build)
    assert build.calls == 1 and not first.hit and second.hit
    rel = first.path.relative_to(tmp_path).as_posix()
    assert rel == f"super_resolution/espcn-x2/{'ab' * 6}/onnx-{key.digest[:16]}"
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["key"] == key.to_dict() and manifest["key_digest"] == key.digest
    assert {f["name"]: f["size"] for f in manifest["files"]} == {"model.onnx": 4096, "extra.bin": 100}
    assert manifest["format"] == MANIFEST_FORMAT and manifest["quality"] == {"psnr_db": 99.0}
    assert _no_temp_left(tmp_path)


def test_the_key_follows_what_changes_the_artifact() -> None:
    base = _key()
    assert _key().digest == base.digest
    assert _key(weights="cd" * 32).digest != base.digest
    assert _key(precision="fp16").digest != base.digest
    assert _key(profile={"opt": {"input": [1, 3, 512, 512]}}).digest != base.digest
    assert _key(device={"kind": "cuda", "gpu": "H200", "capability": [9, 0]}).digest != base.digest
    newer = dict(toolchain_versions(), onnxruntime="99.0.0")
    assert _key(versions=newer).digest != base.digest
    assert base.to_dict()["versions"]["torch"] == toolchain_versions()["torch"]


async def test_single_flight_and_a_cancelled_waiter_does_not_cancel_the_build(tmp_path: Path) -> None:
    cache, key, build = ArtifactCache(tmp_path), _key(), Builder(delay=0.3)
    waiters = [asyncio.create_task(cache.get_or_build(key, build)) for _ in range(5)]
    await asyncio.sleep(0.05)
    waiters[0].cancel()
    results = await asyncio.gather(*waiters[1:])
    assert build.calls == 1
    assert {r.manifest.build_id for r in results} == {results[0].manifest.build_id}
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]


async def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    cache, key = ArtifactCache(tmp_path), _key()
    with pytest.raises(RuntimeError, match="half-way"):
        await cache.get_or_build(key, Builder(fail=True))
    assert not cache.entry_dir(key).exists() and _no_temp_left(tmp_path)
    assert (await cache.get_or_build(key, Builder())).hit is False


def _truncate(p: Path) -> None:
    f = p / "model.onnx"
    f.write_bytes(f.read_bytes()[:100])


def _flip(p: Path) -> None:
    f = p / "model.onnx"
    data = bytearray(f.read_bytes())
    data[2000] ^= 0x01
    f.write_bytes(bytes(data))


def _edit_manifest(change):
    def apply(p: Path) -> None:
        m = json.loads((p / "manifest.json").read_text())
        change(m)
        (p / "manifest.json").write_text(json.dumps(m))

    return apply


CORRUPTIONS = {
    "truncated": _truncate,
    "bit flipped": _flip,
    "file deleted": lambda p: (p / "extra.bin").unlink(),
    "manifest missing": lambda p: (p / "manifest.json").unlink(),
    "manifest not json": lambda p: (p / "manifest.json").write_text("{not json"),
    "wrong checksum": _edit_manifest(lambda m: m["files"][0].update(sha256="0" * 64)),
    "future format": _edit_manifest(lambda m: m.update(format=MANIFEST_FORMAT + 1)),
    "key mismatch": _edit_manifest(lambda m: m["key"].update(name="other")),
    "file escapes the folder": _edit_manifest(lambda m: m["files"][0].update(name="../x")),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
async def test_corruption_is_detected_moved_aside_and_rebuilt(
    tmp_path: Path, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache, key, build = ArtifactCache(tmp_path), _key(), Builder()
    entry = await cache.get_or_build(key, build)
    CORRUPTIONS[corruption](entry.path)
    again = await cache.get_or_build(key, build)
    assert build.calls == 2 and not again.hit
    moved = list((tmp_path / ".quarantine").rglob("QUARANTINE_REASON.txt"))
    assert len(moved) == 1 and moved[0].read_text().strip()
    assert "moved corrupt cache entry" in caplog.text
    assert (await read_manifest(again.path)).key_digest == key.digest


async def test_an_entry_copied_under_another_key_is_not_served(tmp_path: Path) -> None:
    cache, build = ArtifactCache(tmp_path), Builder()
    a, b = _key(), _key(weights="cd" * 32)
    entry = await cache.get_or_build(a, build)
    target = cache.entry_dir(b)
    target.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(entry.path), str(target)], check=True)
    rebuilt = await cache.get_or_build(b, build)
    assert not rebuilt.hit and rebuilt.manifest.key_digest == b.digest


async def test_housekeeping_lists_verifies_prunes_and_clears(tmp_path: Path) -> None:
    cache, build = ArtifactCache(tmp_path), Builder()
    keys = [_key(weights=c * 64) for c in "abc"]
    for k in keys:
        await cache.get_or_build(k, build)
    entries = await scan(cache)
    assert len(entries) == 3 and all(e.problem is None for e in entries)
    _flip(cache.entry_dir(keys[1]))
    report = await verify_all(cache)
    assert [r["ok"] for r in report].count(False) == 1 and len(await scan(cache)) == 2
    size = max(e.size_bytes for e in await scan(cache))  # room for exactly one of the two left
    removed = await prune(cache, max_bytes=size)
    assert len(removed) == 1 and len(await scan(cache)) == 1
    assert clear(cache) >= 1 and await scan(cache) == []


async def test_prune_removes_build_intermediates_before_entries(tmp_path: Path) -> None:
    """Intermediates (a reusable FP32 export, ranges) count toward the size and go first, oldest first."""
    import os

    from model_manager.cache.intermediates import IntermediateStore

    cache, build = ArtifactCache(tmp_path), Builder()
    await cache.get_or_build(_key(), build)
    store = IntermediateStore(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "fp32.onnx").write_bytes(b"x" * 5000)
    old = store.publish("fp32.onnx", "1" * 64, src, ["fp32.onnx"])
    new = store.publish("fp32.onnx", "2" * 64, src, ["fp32.onnx"])
    assert old and new and store.find("fp32.onnx", "1" * 64) == (old, ("fp32.onnx",))
    os.utime(old, (1, 1))  # least recently used
    entry_bytes = sum(e.size_bytes for e in await scan(cache))
    removed = await prune(cache, max_bytes=entry_bytes + 6000)
    assert [r["entry"] for r in removed] == [old.relative_to(tmp_path).as_posix()]
    assert not old.exists() and new.exists() and len(await scan(cache)) == 1
    await prune(cache, max_bytes=entry_bytes)
    assert store.folders() == [] and len(await scan(cache)) == 1
    assert clear(cache) >= 1 and not store.root.exists()


@pytest.fixture
def immutable_dir(tmp_path: Path):
    """A folder even root cannot write into (chattr +i), removed again afterwards."""
    d = tmp_path / "readonly"
    d.mkdir()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    yield d
    subprocess.run(["chattr", "-i", str(d)], check=True)


async def test_a_read_only_cache_still_serves_and_caches_nothing(
    immutable_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, build = ArtifactCache(immutable_dir), Builder()
    entry = await cache.get_or_build(_key(), build)
    assert entry.ephemeral and (entry.path / "model.onnx").is_file()
    assert "not writable" in caplog.text and any("not writable" in n for n in entry.manifest.notes)
    assert list(immutable_dir.iterdir()) == []
    cache.close()
    assert not entry.path.exists()


async def test_lock_timeout_is_a_cache_error(tmp_path: Path) -> None:
    from filelock import FileLock

    cache = ArtifactCache(tmp_path, lock_timeout_s=0.3, wait_log_s=0.1)
    key = _key()
    (tmp_path / ".locks").mkdir()
    held = FileLock(str(tmp_path / ".locks" / f"{key.digest}.lock"), thread_local=False)
    held.acquire()
    try:
        with pytest.raises(CacheError, match="waited"):
            await cache.get_or_build(key, Builder())
    finally:
        held.release()
