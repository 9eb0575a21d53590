"""Intermediates a later build can reuse, addressed by the content they were made from.

A build's FP32 ONNX export, its quantization-ready copy, its calibration ranges and its OpenVINO
IR depend only on the weights, the export settings and the toolchain versions; the build graph
(``optim/graph.py``) computes a fingerprint of exactly that and asks this store before making one
again. Layout: ``<cache_dir>/.intermediates/<step>/<fingerprint[:32]>/`` holding the files and
``record.json`` (their sizes and SHA-256s, and the full fingerprint).

Same guarantees as entries: published by renaming a finished temporary folder into place (a
half-written folder is never visible; a second publisher of the same fingerprint discards its
copy), verified before every reuse (a bad folder is deleted and the intermediate made again),
JSON only, owner-only modes, symbolic links never followed. ``cache prune`` and ``clear`` remove
them like entries; nothing here is ever needed to load a published entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .manifest import make_private

log = logging.getLogger(__name__)

INTERMEDIATES = ".intermediates"
RECORD = "record.json"
PART_PREFIX = ".part-"
"""A folder being published: ``.part-<pid>-<random>``, removed once its process is gone."""
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class IntermediateStore:
    """``<root>/.intermediates``: content-addressed folders of build intermediates."""

    def __init__(self, cache_root: str | Path) -> None:
        self.root = Path(cache_root).expanduser() / INTERMEDIATES

    def folder(self, step: str, fingerprint: str) -> Path:
        return self.root / step / fingerprint[:32]

    def find(self, step: str, fingerprint: str) -> tuple[Path, tuple[str, ...]] | None:
        """The verified folder for (step, fingerprint) and its file names in order, or None.

        A folder that fails verification is removed (the caller makes the intermediate again).
        """
        folder = self.folder(step, fingerprint)
        if any(p.is_symlink() for p in (self.root, folder.parent, folder)):
            log.warning("intermediate %s is behind a symbolic link; not used", folder)
            return None
        if not folder.is_dir():
            return None
        names, problem = self._verified_names(folder, fingerprint)
        if problem is None:
            with contextlib.suppress(OSError):
                os.utime(folder)  # last use, for prune
            return folder, names
        log.warning("intermediate %s is unusable (%s); making it again", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
        return None

    def _verified_names(self, folder: Path, fingerprint: str) -> tuple[tuple[str, ...], str | None]:
        try:
            record = json.loads((folder / RECORD).read_text())
            if record.get("fingerprint") != fingerprint:
                return (), "its record names another fingerprint"
            names = tuple(record["order"])
            if sorted(names) != sorted(record["files"]) or not names:
                return (), "its record lists other files"
            for name in names:
                size, sha = record["files"][name]
                path = folder / name
                if "/" in name or path.is_symlink() or not path.is_file():
                    return (), f"{name} is missing"
                if path.stat().st_size != size or _sha256(path) != sha:
                    return (), f"{name} differs from its record"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return (), f"unreadable record: {exc}"
        return names, None

    def publish(self, step: str, fingerprint: str, source: Path, names: list[str]) -> Path | None:
        """Copy ``names`` from ``source`` into the store; the published folder, or None if it cannot.

        A store that cannot be written (read-only cache, full disk) only costs the reuse: the
        build goes on with its own copy.
        """
        final = self.folder(step, fingerprint)
        tmp: Path | None = None
        try:
            if not self.root.parent.is_dir():  # a cache root the build creates: owner-only, as the cache's
                self.root.parent.mkdir(mode=0o700, parents=True)
            for folder in (self.root, final.parent):
                if folder.is_symlink():  # never write (or chmod) through a link out of the cache
                    log.warning("%s is a symbolic link; intermediates are not kept", folder)
                    return None
                folder.mkdir(mode=0o700, exist_ok=True)
                make_private(folder)
            self.remove_dead_parts(final.parent)
            tmp = Path(tempfile.mkdtemp(prefix=f"{PART_PREFIX}{os.getpid()}-", dir=final.parent))
            files = {}
            for name in names:
                shutil.copyfile(source / name, tmp / name)
                make_private(tmp / name)
                files[name] = [(tmp / name).stat().st_size, _sha256(tmp / name)]
            record = {
                "fingerprint": fingerprint,
                "step": step,
                "order": names,
                "files": files,
                "created": time.time(),
            }
            (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
            make_private(tmp / RECORD)
            try:
                tmp.rename(final)
            except OSError:  # another build published the same fingerprint first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
            return final if final.is_dir() else None
        except OSError as exc:
            log.info("could not keep intermediate %s for reuse: %s", final, exc)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            return None

    def remove_dead_parts(self, step_folder: Path | None = None) -> list[Path]:
        """Delete half-published folders whose publishing process is gone (killed mid-copy)."""
        parents = [step_folder] if step_folder is not None else self._step_folders()
        removed = []
        for part in (p for parent in parents for p in parent.glob(f"{PART_PREFIX}*") if p.is_dir()):
            pid = part.name[len(PART_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)) and not part.is_symlink():
                shutil.rmtree(part, ignore_errors=True)
                removed.append(part)
        return removed

    def _step_folders(self) -> list[Path]:
        if not self.root.is_dir() or self.root.is_symlink():
            return []
        return [s for s in self.root.iterdir() if s.is_dir() and not s.is_symlink()]

    def folders(self) -> list[Path]:
        """Every published intermediate folder (for prune and listing); links are skipped."""
        return sorted(
            f
            for step in self._step_folders()
            for f in step.iterdir()
            if f.is_dir() and not f.is_symlink() and not f.name.startswith(".")
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
