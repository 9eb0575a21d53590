"""One build per cache key across a Ray cluster: a shared cache folder, or a shipped entry.

**A cache folder shared by the nodes** (every actor's ``ModelConfig.cache_dir`` on one shared
filesystem): nothing to ship. The cache's per-key file lock (``filelock.FileLock``, which on Linux
is ``fcntl.flock`` on ``<root>/.locks/<key>.lock``) lets one process build while the others wait
and then load the published entry. That holds only where the filesystem makes ``flock`` coherent
across nodes:

- local disk: yes (but then it is not shared by nodes);
- NFS (v3 with ``lockd``/``statd`` running, v4 with its built-in locking): yes. Since Linux 2.6.12
  the NFS client emulates ``flock`` as a whole-file byte-range lock on the server (flock(2),
  "NFS details"). Not with ``nolock`` or ``local_lock=flock|all`` (nfs(5)): the lock then only
  excludes processes on the same client, and two nodes build at once;
- CephFS (kernel client and ceph-fuse): yes, the MDS arbitrates ``flock`` and ``fcntl`` locks
  (fs/ceph/locks.c);
- Lustre: only when mounted with ``-o flock`` (coherent across clients); ``localflock`` is
  node-local (two nodes build at once), ``noflock`` fails with ENOSYS (mount.lustre(8));
- FUSE object-store mounts (s3fs, gcsfuse, blobfuse, goofys, ...): no. Where the FUSE
  filesystem does not implement locking, the kernel grants ``flock`` locally only, with no error
  (libfuse's ``flock`` operation doc; s3fs-fuse issue #2137), and a folder rename is not atomic
  on an object store. Use per-node local cache folders and ship.

Known behaviour to keep in mind (not verified here): filelock 4.x falls back to a soft lock (an
``O_EXCL`` marker file, with a warning) where ``flock`` reports ENOSYS; across nodes that is only
as good as the filesystem's exclusive create. Where locking is not coherent nothing is corrupted
(a build publishes by renaming a finished folder; a loser keeps or quarantines, never serves a
half-written entry) but the key may be built once per node.

**No shared folder** (each node has its own cache folder): build once on the driver
(:func:`build_once`, or the first actor), put the packed entry in Ray's object store
(:func:`ship_to_ray`), and in each actor :func:`receive` it before loading: the entry's files
are checked against the shipped manifest's SHA-256s before anything is written, written into
``<parent>/.tmp-ship-...`` beside the entry, then renamed into place under the key's file lock;
a later ``load_optimized_model`` with the same key is a cache hit, never a rebuild per actor.
What lands on disk are the entry's files as they were: the ShippedEntry travels pickled through
Ray, but nothing in the cache is ever unpickled.

The key of a measured CPU decision (``auto`` on the CPU) or of compiled CPU code carries the CPU
model and the thread count: an actor on a node with another CPU computes another key, the shipped
entry is not used there and that node builds its own, which is right (the decision is per CPU).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from ..cache.housekeeping import ENTRY_DEPTH
from ..cache.key import canonical_json
from ..cache.manifest import MANIFEST_NAME, FileRecord, Manifest, make_private
from ..cache.storage import storage_cause, write_error
from ..cache.store import LOCKS, TMP_PREFIX, ArtifactCache
from ..errors import (
    BackendUnavailableError,
    CacheLockTimeout,
    CorruptEntryError,
    ModelInputError,
)

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..descriptor import ShapeRange

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 3600.0
"""How long :func:`unpack_entry` waits for the key's lock (held by a build of the same key)."""
_CHUNK = 1 << 20
_SHIP = "ship-"


@dataclass(frozen=True, repr=False)
class ShippedEntry:
    """A verified cache entry in transit: where it goes under a cache root and its files' bytes."""

    relpath: str
    """The entry folder relative to the cache root (posix, no '..')."""
    files: dict[str, bytes]
    """Every file of the entry, manifest.json included."""

    def digest(self) -> str:
        """SHA-256 of the manifest's bytes: the entry's content address."""
        if MANIFEST_NAME not in self.files:
            raise CorruptEntryError(
                f"shipped entry {self.relpath}: no {MANIFEST_NAME} among {sorted(self.files)}"
            )
        return hashlib.sha256(self.files[MANIFEST_NAME]).hexdigest()

    def __repr__(self) -> str:
        size = sum(len(b) for b in self.files.values())
        return f"<ShippedEntry {self.relpath}: {len(self.files)} files, {size} bytes>"


# -- packing ----------------------------------------------------------------------------------
def pack_entry(cache_root: Path, entry_folder: Path) -> ShippedEntry:
    """Read and verify a published entry of the cache at ``cache_root`` (manifest checksums).

    Refused: a folder outside the root or not at entry depth (ModelInputError), a symbolic link
    on the way or among the files, a missing manifest, a file that fails its checksum
    (CorruptEntryError).
    """
    root = Path(cache_root).expanduser().absolute()
    folder = Path(entry_folder).expanduser().absolute()
    if not folder.is_relative_to(root):
        raise ModelInputError(f"entry folder {folder} is not under the cache root {root}")
    rel = _check_relpath(folder.relative_to(root).as_posix())
    _refuse_links(root, rel)
    where = str(folder)
    files = {MANIFEST_NAME: _read_file(folder / MANIFEST_NAME, where)}
    manifest = _parse_manifest(files[MANIFEST_NAME], rel, where)
    for record in manifest.files:
        files[record.name] = _read_file(folder / record.name, where)
    _verify(manifest, files, where)
    return ShippedEntry(rel.as_posix(), files)


def _read_file(path: Path, where: str) -> bytes:
    """A regular file's bytes, never through a symbolic link."""
    if path.is_symlink():
        raise CorruptEntryError(f"{where}: {path.name} is a symbolic link (to {path.readlink()})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        what = "no manifest (a partial entry)" if path.name == MANIFEST_NAME else f"{path.name} is missing"
        raise CorruptEntryError(f"{where}: {what}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CorruptEntryError(f"{where}: {path.name} is not a regular file")
        return f.read()


# -- checks (all before anything is written) ------------------------------------------------------
def _check_relpath(relpath: object) -> PurePosixPath:
    """The relpath as a path inside the root at entry depth, else ModelInputError naming it."""
    if not isinstance(relpath, str):
        raise ModelInputError(f"relpath must be a str, got {type(relpath).__name__}")
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or "\\" in relpath or any(p in ("..", ".", "") for p in relpath.split("/")):
        raise ModelInputError(
            f"relpath {relpath!r} escapes the cache root (expected a relative path, no '..')"
        )
    if len(rel.parts) != ENTRY_DEPTH or any(p.startswith(".") for p in rel.parts):
        raise ModelInputError(
            f"relpath {relpath!r} is not an entry folder: expected <type>/<name>/<weights>/<strategy>-<key>"
        )
    return rel


def _refuse_links(root: Path, rel: PurePosixPath) -> None:
    """Refuse a symbolic link anywhere from below the root down to the entry folder."""
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise CorruptEntryError(
                f"{current} is a symbolic link (to {current.readlink()}); "
                "entries are never shipped through one"
            )


def _parse_manifest(data: bytes, rel: PurePosixPath, where: str) -> Manifest:
    """Parse the manifest (JSON only) and check that its key belongs at ``rel``."""
    try:
        manifest = Manifest.from_json(data.decode("utf-8"), Path(where))
    except UnicodeDecodeError as exc:
        raise CorruptEntryError(f"{where}: {MANIFEST_NAME} is not UTF-8 text: {exc}") from exc
    try:
        key = manifest.key
        digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()
        home = PurePosixPath(
            key["model_type"], key["name"], key["weights_sha256"][:12], f"{key['strategy']}-{digest[:16]}"
        )
    except (KeyError, TypeError) as exc:
        raise CorruptEntryError(f"{where}: manifest key lacks a field: {exc}") from exc
    if digest != manifest.key_digest:
        raise CorruptEntryError(
            f"{where}: manifest key hashes to {digest}, key_digest says {manifest.key_digest}"
        )
    if home != rel:
        raise CorruptEntryError(f"{where}: the manifest's key belongs at {home}, not at {rel}")
    return manifest


def _verify(manifest: Manifest, files: dict[str, bytes], where: str) -> None:
    """Every file present, none extra, sizes and SHA-256s as the manifest says; else one error."""
    expected = {r.name for r in manifest.files} | {MANIFEST_NAME}
    problems = [f"{n} is missing (the manifest lists it)" for n in sorted(expected - set(files))]
    problems += [f"{n} is not in the manifest" for n in sorted(set(files) - expected)]
    problems += [p for r in manifest.files if r.name in files for p in _check_record(r, files[r.name])]
    if problems:
        raise CorruptEntryError(f"{where}: " + "; ".join(problems))


def _check_record(record: FileRecord, data: bytes) -> list[str]:
    got = hashlib.sha256(data).hexdigest()
    if got == record.sha256 and len(data) == record.size:
        return []
    return [
        f"{record.name}: expected sha256 {record.sha256} ({record.size} bytes), "
        f"got sha256 {got} ({len(data)} bytes)"
    ]


def _problems_on_disk(folder: Path, shipped: Manifest) -> list[str]:
    """Why the entry at ``folder`` is not a sound entry of the shipped key (empty when it is)."""
    where = str(folder)
    try:
        manifest = Manifest.from_json(_read_file(folder / MANIFEST_NAME, where).decode("utf-8"), folder)
    except (CorruptEntryError, UnicodeDecodeError) as exc:
        return [str(exc)]
    if manifest.key_digest != shipped.key_digest or manifest.key != shipped.key:
        return [f"its manifest key {manifest.key_digest} is not the shipped key {shipped.key_digest}"]
    problems = []
    for record in manifest.files:
        path = folder / record.name
        if path.is_symlink() or not path.is_file():
            problems.append(f"{record.name} is missing or not a regular file")
        elif (got := _sha256_path(path)) != record.sha256:
            problems.append(f"{record.name}: expected sha256 {record.sha256}, got sha256 {got}")
    return problems


def _sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# -- unpacking --------------------------------------------------------------------------------
def unpack_entry(cache_root: Path, shipped: ShippedEntry) -> Path:
    """Verify a shipped entry, then publish it atomically under ``cache_root``; the entry folder.

    Every file is checked against the shipped manifest before anything is written (a mismatch is
    a CorruptEntryError naming the file and both SHA-256s). Under the key's file lock: a sound
    entry of the same key already there is kept (no-op); a corrupt one is quarantined; otherwise
    the files go into ``<parent>/.tmp-ship-<key>-<uuid>/`` (owner-only), manifest last, and the
    folder is renamed into place. Should another process publish meanwhile (a filesystem whose
    locks do not hold), its entry is kept if it verifies and ours dropped. Blocking (it may wait
    for a build of the same key): from async code, run it in a thread.
    """
    if not isinstance(shipped, ShippedEntry):
        raise ModelInputError(f"expected a ShippedEntry, got {type(shipped).__name__}")
    root = Path(cache_root).expanduser().absolute()
    rel = _check_relpath(shipped.relpath)
    where = f"shipped entry {rel}"
    if MANIFEST_NAME not in shipped.files:
        raise CorruptEntryError(f"{where}: no {MANIFEST_NAME} among {sorted(shipped.files)}")
    manifest = _parse_manifest(shipped.files[MANIFEST_NAME], rel, where)
    _verify(manifest, shipped.files, where)
    final = root.joinpath(*rel.parts)
    cache = ArtifactCache(root)
    cache.mkdir_private(root / LOCKS)
    _refuse_links(root, rel)
    lock = FileLock(str(root / LOCKS / f"{manifest.key_digest}.lock"), mode=0o600, thread_local=False)
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise CacheLockTimeout(f"waited {LOCK_TIMEOUT_S:.0f} s for the lock of {final}") from None
    try:
        if _keep_existing(cache, final, manifest):
            return final
        _publish(cache, final, shipped, manifest)
    finally:
        lock.release()
    return final


def _keep_existing(cache: ArtifactCache, final: Path, manifest: Manifest) -> bool:
    """Whether a sound entry of the key is already published; a corrupt one is moved aside."""
    if not final.exists():
        return False
    problems = _problems_on_disk(final, manifest)
    if problems:
        cache.quarantine(final, "; ".join(problems))
        return False
    log.info("%s is already published here (build %s); nothing to unpack", final, manifest.build_id)
    return True


def _publish(cache: ArtifactCache, final: Path, shipped: ShippedEntry, manifest: Manifest) -> None:
    """Write the files into a temporary folder beside the entry, then rename it into place."""
    tmp = final.parent / f"{TMP_PREFIX}{_SHIP}{manifest.key_digest[:16]}-{uuid.uuid4().hex}"
    try:
        cache.mkdir_private(final.parent)
        tmp.mkdir(mode=0o700)
        make_private(tmp)
        for record in manifest.files:
            _write_file(tmp / record.name, shipped.files[record.name])
        _write_file(tmp / MANIFEST_NAME, shipped.files[MANIFEST_NAME])  # last, as a build does
        _rename_into_place(cache, tmp, final, manifest)
    except OSError as exc:
        if (cause := storage_cause(exc)) is not None:
            raise write_error(f"the shipped entry {final.name}", final.parent, cause) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rename_into_place(cache: ArtifactCache, tmp: Path, final: Path, manifest: Manifest) -> None:
    """Rename; if another process published first, keep theirs when sound, else replace it once."""
    for attempt in range(2):
        try:
            tmp.rename(final)
            log.info("published shipped entry %s (build %s)", final, manifest.build_id)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or attempt:
                raise
        if _keep_existing(cache, final, manifest):
            return


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (never through a link), write all of ``data``, fsync; owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    make_private(path)


# -- driver and actors ------------------------------------------------------------------------
async def build_once(
    config: ModelConfig,
    model_type: str,
    name: str,
    optimization: str,
    shape_range: ShapeRange | None = None,
) -> ShippedEntry | None:
    """On the driver: build (or hit) the entry in ``config.cache_dir`` and pack it for shipping.

    None where the strategy has no cache entry: eager ``none`` runs the FP32 module directly, so
    there is nothing to ship (each actor loads the weights itself). An unwritable driver cache
    (the entry was built in a temporary folder) is refused: give the driver a writable cache_dir.
    """
    from ..manager import ModelManager

    async with ModelManager(config) as manager:
        runner = await manager.load_optimized_model(model_type, name, optimization, shape_range=shape_range)
        if runner.info.artifact_path is None:
            log.info("%s/%s [%s]: no cache entry, nothing to ship", model_type, name, runner.info.strategy)
            return None
        path = Path(runner.info.artifact_path)  # the entry folder (a file in it would name its folder)
        folder = path if path.is_dir() else path.parent
        root = manager.cache.root.absolute()
        if not folder.absolute().is_relative_to(root):
            raise ModelInputError(
                f"the entry was built in {folder}, not under the cache folder {root} (not writable?): "
                "give the driver a writable cache_dir"
            )
        return await asyncio.to_thread(pack_entry, root, folder)


def ship_to_ray(shipped: ShippedEntry | None) -> Any:
    """``ray.put(shipped)`` (an ObjectRef every actor can receive); None stays None."""
    if shipped is None:
        return None
    if not isinstance(shipped, ShippedEntry):
        raise ModelInputError(f"expected a ShippedEntry or None, got {type(shipped).__name__}")
    return _ray().put(shipped)


def receive(ref_or_entry: Any, cache_root: Path) -> Path | None:
    """In an actor: fetch (``ray.get`` of an ObjectRef) and unpack into ``cache_root``; None for None."""
    shipped = ref_or_entry
    if shipped is not None and not isinstance(shipped, ShippedEntry):
        ray = _ray()
        if not isinstance(shipped, ray.ObjectRef):
            raise ModelInputError(
                f"expected a ShippedEntry, a Ray ObjectRef of one, or None; got {type(shipped).__name__}"
            )
        shipped = ray.get(shipped)
        if shipped is not None and not isinstance(shipped, ShippedEntry):
            raise ModelInputError(f"the ObjectRef holds a {type(shipped).__name__}, expected a ShippedEntry")
    return None if shipped is None else unpack_entry(cache_root, shipped)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError(
            "shipping through Ray needs ray: pip install 'model_manager[ray]'"
        ) from exc
    return ray
