"""ArtifactCache: a browsable folder of verified artifacts, built once per key across processes.

Layout: ``<root>/<type>/<name>/<weights-hash-prefix>/<strategy>-<key-prefix>/`` with the artifact
files and ``manifest.json``. A build writes into a unique temporary folder beside the entry and
renames it into place with the manifest already inside. One builder per key: in-process callers
share one task (single-flight, shielded so a cancelled waiter does not cancel the build); other
processes wait on a per-key file lock and then load the published entry. An entry that fails
verification is moved to ``<root>/.quarantine/`` (never deleted silently) and rebuilt. The cache
never knows what is inside an artifact: builders produce files, runners read them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..errors import CacheLockTimeout, CacheWriteError, CorruptEntryError
from .key import CacheKey
from .manifest import Manifest, make_private, read_manifest, record_files, verify_files, write_manifest
from .storage import storage_cause, write_error

log = logging.getLogger(__name__)

QUARANTINE = ".quarantine"
LOCKS = ".locks"
TMP_PREFIX = ".tmp-"
# last_used is rewritten at most this often per entry, so loads do not churn the disk.
_TOUCH_INTERVAL_S = 60.0


@dataclass
class BuildOutput:
    """What a builder reports about the files it wrote into the folder it was given."""

    files: list[str]
    backend: str
    precision: str
    quality: dict[str, Any] = field(default_factory=dict)
    benchmark: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    build: dict[str, Any] = field(default_factory=dict)
    """The build graph's report: every step, made or reused, and its seconds."""


Builder = Callable[[Path], Awaitable[BuildOutput]]


@dataclass
class CacheEntry:
    """A published (or, for an unwritable cache, temporary) entry and whether it was a hit."""

    key: CacheKey
    path: Path
    manifest: Manifest
    hit: bool
    ephemeral: bool = False


class ArtifactCache:
    """Keys -> verified entries on disk; see the module docstring for the guarantees."""

    def __init__(self, root: str | Path, *, lock_timeout_s: float = 3600.0, wait_log_s: float = 10.0) -> None:
        self.root = Path(root).expanduser()
        self.lock_timeout_s = lock_timeout_s
        self.wait_log_s = wait_log_s
        self._inflight: dict[str, asyncio.Task[CacheEntry]] = {}
        self._ephemeral: list[Path] = []

    # -- lookup and build ----------------------------------------------------------------
    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.relative_dir()

    async def get_or_build(self, key: CacheKey, build: Builder) -> CacheEntry:
        """The verified entry for ``key``, building it (once, across coroutines and processes) if absent."""
        task = self._inflight.get(key.digest)
        if task is None:
            task = asyncio.ensure_future(self._load_or_build(key, build))
            self._inflight[key.digest] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key.digest, None))
        return await asyncio.shield(task)

    async def load(self, key: CacheKey) -> CacheEntry | None:
        """The published entry if present and sound; a corrupt one is quarantined and None returned."""
        folder = self.entry_dir(key)
        link = self._symlink_below_root(folder)
        if link is not None:  # never follow a link out of the cache: the link itself is moved aside
            self.quarantine(link, f"{link} is a symbolic link to {link.readlink()}; {folder} is not served")
            return None
        if not folder.exists():
            return None
        try:
            manifest = await read_manifest(folder)
            self._check_key(folder, manifest, key)
            problems = await verify_files(folder, manifest)
            if problems:
                raise CorruptEntryError(f"{folder}: " + "; ".join(problems))
        except CorruptEntryError as exc:
            self.quarantine(folder, str(exc))
            return None
        await self._touch(folder, manifest)
        return CacheEntry(key, folder, manifest, hit=True)

    async def _load_or_build(self, key: CacheKey, build: Builder) -> CacheEntry:
        entry = await self.load(key)
        if entry is not None:
            return entry
        if not self._writable():
            return await self._build_ephemeral(key, build)
        lock = FileLock(str(self.root / LOCKS / f"{key.digest}.lock"), mode=0o600, thread_local=False)
        await self._acquire(lock, key)
        try:
            entry = await self.load(key)  # another process may have published it meanwhile
            if entry is not None:
                return entry
            self._remove_stale_builds(key)
            return await self._build_and_publish(key, build)
        finally:
            lock.release()

    async def _acquire(self, lock: FileLock, key: CacheKey) -> None:
        """Take the key's file lock, logging while another process holds it."""
        self.mkdir_private(self.root / LOCKS)
        waited = 0.0
        while True:
            try:
                await asyncio.to_thread(lock.acquire, timeout=min(self.wait_log_s, self.lock_timeout_s))
                return
            except Timeout:
                waited += self.wait_log_s
                if waited >= self.lock_timeout_s:
                    raise CacheLockTimeout(
                        f"waited {waited:.0f} s for another process building {key.relative_dir()}"
                    ) from None
                log.info("waiting for another process building %s (%.0f s)", key.relative_dir(), waited)

    def _remove_stale_builds(self, key: CacheKey) -> None:
        """Delete temporary folders of this key left by builders that died (we hold its lock)."""
        final = self.entry_dir(key)
        if not final.parent.is_dir():
            return
        for stale in final.parent.glob(f"{TMP_PREFIX}{final.name}-*"):
            log.warning("removing %s, left by a build that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)

    async def _build_and_publish(self, key: CacheKey, build: Builder) -> CacheEntry:
        final = self.entry_dir(key)
        self.mkdir_private(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=final.parent))
        try:
            manifest = await self._build_into(tmp, key, build)
            if final.exists():
                self.quarantine(final, "replaced by a fresh build")
            tmp.rename(final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if (cause := storage_cause(exc)) is not None and not isinstance(exc, CacheWriteError):
                raise write_error(f"the entry {final.name}", final.parent, cause) from exc
            raise
        log.info("published %s (%.1f s build)", final, manifest.build_seconds)
        return CacheEntry(key, final, manifest, hit=False)

    async def _build_into(self, folder: Path, key: CacheKey, build: Builder) -> Manifest:
        """Run the builder in ``folder`` and write the manifest last."""
        started = time.perf_counter()
        out = await build(folder)
        for name in out.files:  # builders write with the umask's modes; cached files are owner-only
            make_private(folder / name)
        manifest = Manifest(
            key=key.to_dict(),
            key_digest=key.digest,
            files=await record_files(folder, out.files),
            strategy=key.strategy,
            backend=out.backend,
            precision=out.precision,
            build_seconds=round(time.perf_counter() - started, 3),
            build_id=uuid.uuid4().hex,
            quality=out.quality,
            benchmark=out.benchmark,
            decision=out.decision,
            notes=out.notes,
            build=out.build,
        )
        await write_manifest(folder, manifest)
        return manifest

    async def _build_ephemeral(self, key: CacheKey, build: Builder) -> CacheEntry:
        """Serve from a private temporary folder when the cache cannot be written."""
        folder = Path(tempfile.mkdtemp(prefix="model_manager-uncached-"))
        self._ephemeral.append(folder)
        log.warning(
            "cache folder %s is not writable: building %s in %s, nothing cached",
            self.root,
            key.relative_dir(),
            folder,
        )
        manifest = await self._build_into(folder, key, build)
        manifest.notes.append(f"cache folder {self.root} is not writable: served from a temporary folder")
        return CacheEntry(key, folder, manifest, hit=False, ephemeral=True)

    # -- consistency -----------------------------------------------------------------------
    def _check_key(self, folder: Path, manifest: Manifest, key: CacheKey) -> None:
        if manifest.key_digest != key.digest or manifest.key != key.to_dict():
            raise CorruptEntryError(f"{folder}: manifest key does not match the folder's key")

    def quarantine(self, folder: Path, reason: str) -> Path | None:
        """Move a bad entry under ``.quarantine/`` with the reason beside it; log it."""
        rel = folder.relative_to(self.root) if folder.is_relative_to(self.root) else Path(folder.name)
        target = (
            self.root
            / QUARANTINE
            / rel.parent
            / f"{rel.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        )
        try:
            self.mkdir_private(target.parent)
            if folder.is_symlink():  # move the link itself into a real folder; never write through it
                self.mkdir_private(target)
                folder.rename(target / folder.name)
            else:
                folder.rename(target)
            (target / "QUARANTINE_REASON.txt").write_text(reason + "\n")
            make_private(target / "QUARANTINE_REASON.txt")
        except OSError as exc:
            log.error("corrupt cache entry %s (%s) could not be moved aside: %s", folder, reason, exc)
            return None
        log.warning("moved corrupt cache entry %s to %s: %s", folder, target, reason)
        return target

    def _symlink_below_root(self, path: Path) -> Path | None:
        """The first folder or file from below the root down to ``path`` that is a symbolic link."""
        current = self.root
        for name in path.relative_to(self.root).parts:
            current = current / name
            if current.is_symlink():
                return current
        return None

    def mkdir_private(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents from the root down, owner-only (0o700), any umask."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        current = self.root.parent
        for name in folder.relative_to(self.root.parent).parts:
            current = current / name
            try:
                current.mkdir(mode=0o700)
            except FileExistsError:
                continue
            make_private(current)

    async def _touch(self, folder: Path, manifest: Manifest) -> None:
        now = time.time()
        if now - manifest.last_used < _TOUCH_INTERVAL_S:
            return
        manifest.last_used = now
        try:
            await write_manifest(folder, manifest)
        except OSError:  # a read-only cache still serves
            log.debug("could not update last_used of %s", folder)

    def _writable(self) -> bool:
        try:
            self.mkdir_private(self.root)
            probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=self.root))
            probe.rmdir()
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Remove the temporary folders of an unwritable cache."""
        for folder in self._ephemeral:
            shutil.rmtree(folder, ignore_errors=True)
        self._ephemeral.clear()
