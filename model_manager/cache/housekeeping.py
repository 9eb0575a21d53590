"""Looking after the cache folder: list entries, verify them all, prune by least recent use, clear."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..errors import CorruptEntryError
from .intermediates import IntermediateStore
from .manifest import Manifest, read_manifest, verify_files
from .store import LOCKS, QUARANTINE, TMP_PREFIX, ArtifactCache

log = logging.getLogger(__name__)

ENTRY_DEPTH = 4  # <type>/<name>/<weights-hash>/<strategy>-<key>


@dataclass
class EntryInfo:
    """One folder at entry depth: its manifest when readable, else the problem."""

    path: Path
    relative: str
    manifest: Manifest | None
    problem: str | None
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "entry": self.relative,
            "strategy": m.strategy if m else None,
            "chosen": m.decision.get("chosen", m.strategy) if m else None,
            "backend": m.backend if m else None,
            "size_bytes": self.size_bytes,
            "created": m.created if m else None,
            "last_used": m.last_used if m else None,
            "build_seconds": m.build_seconds if m else None,
            "problem": self.problem,
        }


def _entry_folders(root: Path) -> list[Path]:
    """Folders at entry depth, skipping hidden ones (quarantine, locks, temporary builds) and links.

    A symbolic link is never followed: what it points to may lie outside the cache.
    """
    return _entry_folders_at(root, ENTRY_DEPTH)


def _entry_folders_at(root: Path, depth: int) -> list[Path]:
    level = [root] if root.is_dir() else []
    for _ in range(depth):
        level = [
            c for p in level for c in sorted(p.iterdir()) if _real_folder(c) and not c.name.startswith(".")
        ]
    return level


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def scan(cache: ArtifactCache) -> list[EntryInfo]:
    """Every entry with its manifest (or why it has none); nothing is modified."""
    infos = []
    for folder in _entry_folders(cache.root):
        try:
            manifest: Manifest | None = await read_manifest(folder)
            problem = None
        except CorruptEntryError as exc:
            manifest, problem = None, str(exc)
        rel = folder.relative_to(cache.root).as_posix()
        infos.append(EntryInfo(folder, rel, manifest, problem, _folder_bytes(folder)))
    return infos


async def verify_all(cache: ArtifactCache) -> list[dict[str, Any]]:
    """Check every entry's manifest, folder name and checksums; move bad ones aside."""
    results = []
    for info in await scan(cache):
        problems = [info.problem] if info.problem else []
        if info.manifest is not None:
            if not info.path.name.endswith(info.manifest.key_digest[:16]):
                problems.append("manifest key does not match the folder")
            problems += await verify_files(info.path, info.manifest)
        moved = cache.quarantine(info.path, "; ".join(problems)) if problems else None
        results.append(
            {
                "entry": info.relative,
                "ok": not problems,
                "problems": problems,
                "moved_to": str(moved) if moved else None,
            }
        )
    return results


def remove_abandoned_builds(cache: ArtifactCache) -> list[dict[str, Any]]:
    """Delete ``.tmp-*`` build folders whose builder is gone (its key's lock is free); list them.

    A process killed mid-build leaves its temporary folder; the next build of the same key removes
    it, and this removes the ones whose key is never built again. A folder whose lock is held
    belongs to a running build and is kept.
    """
    removed = []
    parents = _entry_folders_at(cache.root, ENTRY_DEPTH - 1)
    for tmp in sorted(t for p in parents for t in p.glob(f"{TMP_PREFIX}*") if _real_folder(t)):
        key_prefix = tmp.name.rsplit("-", 2)[-2] if tmp.name.count("-") >= 3 else ""
        locks = sorted((cache.root / LOCKS).glob(f"{key_prefix}*.lock")) if key_prefix else []
        lock = FileLock(str(locks[0]), mode=0o600, thread_local=False) if locks else None
        try:
            if lock is not None:
                lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            size = _folder_bytes(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if lock is not None:
                lock.release()
        removed.append({"entry": str(tmp.relative_to(cache.root)), "size_bytes": size, "reason": "abandoned"})
        log.warning("removed %s, left by a build that did not finish", tmp)
    return removed


async def prune(cache: ArtifactCache, max_bytes: int) -> list[dict[str, Any]]:
    """Delete least recently used entries until the cache holds at most ``max_bytes``.

    Temporary folders of builds that died are removed first, then build intermediates (they only
    make the next build faster), least recently used first, then entries. Entries whose build lock
    is held (being built or rebuilt) are skipped.
    """
    removed = remove_abandoned_builds(cache)
    store = IntermediateStore(cache.root)
    for part in store.remove_dead_parts():
        removed.append(
            {"entry": part.relative_to(cache.root).as_posix(), "size_bytes": 0, "reason": "abandoned"}
        )
    infos = sorted(await scan(cache), key=lambda i: i.manifest.last_used if i.manifest else 0.0)
    intermediates = sorted(store.folders(), key=lambda f: f.stat().st_mtime)
    sizes = {f: _folder_bytes(f) for f in intermediates}
    total = sum(i.size_bytes for i in infos) + sum(sizes.values())
    for folder in intermediates:
        if total <= max_bytes:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append({"entry": folder.relative_to(cache.root).as_posix(), "size_bytes": sizes[folder]})
        log.info("pruned intermediate %s (%d bytes)", folder.relative_to(cache.root), sizes[folder])
    for info in infos:
        if total <= max_bytes:
            break
        if info.manifest is not None and not _remove_unless_locked(cache, info):
            continue
        if info.manifest is None:
            shutil.rmtree(info.path, ignore_errors=True)
        total -= info.size_bytes
        removed.append({"entry": info.relative, "size_bytes": info.size_bytes})
        log.info("pruned %s (%d bytes)", info.relative, info.size_bytes)
    return removed


def _remove_unless_locked(cache: ArtifactCache, info: EntryInfo) -> bool:
    assert info.manifest is not None
    lock = FileLock(
        str(cache.root / LOCKS / f"{info.manifest.key_digest}.lock"), mode=0o600, thread_local=False
    )
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("skipped %s: it is being built", info.relative)
        return False
    try:
        shutil.rmtree(info.path)
    finally:
        lock.release()
    return True


def clear(cache: ArtifactCache) -> int:
    """Remove every entry, the quarantine and stale temporary builds; returns folders removed."""
    if not cache.root.is_dir():
        return 0
    removed = 0
    for child in cache.root.iterdir():
        if child.name == LOCKS or not child.is_dir():
            continue
        if child.is_symlink():  # remove the link, never what it points to
            child.unlink()
        else:
            shutil.rmtree(child, ignore_errors=True)
        removed += 1
    log.info("cleared %s (%d top-level folders)", cache.root, removed)
    return removed


__all__ = ["QUARANTINE", "EntryInfo", "clear", "prune", "remove_abandoned_builds", "scan", "verify_all"]
