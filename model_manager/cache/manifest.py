"""manifest.json: what an entry holds (the whole key, file sizes and SHA-256s) and how it came to be.

Read and written with aiofiles; written last and atomically (temporary file, then rename), so an
entry without a valid manifest does not exist. Only JSON is ever read back: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiofiles

from ..errors import CorruptEntryError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20
_SELF_SHA256 = "manifest_sha256"


@dataclass(frozen=True)
class FileRecord:
    """One artifact file of an entry."""

    name: str
    size: int
    sha256: str


@dataclass
class Manifest:
    """Everything recorded about one cache entry."""

    key: dict[str, Any]
    key_digest: str
    files: list[FileRecord]
    strategy: str
    backend: str
    precision: str
    build_seconds: float
    build_id: str
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    quality: dict[str, Any] = field(default_factory=dict)
    benchmark: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    build: dict[str, Any] = field(default_factory=dict)
    """How the build went: every graph step (made, or reused from an earlier build) and its seconds."""
    format: int = MANIFEST_FORMAT

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        """The manifest as JSON, with the SHA-256 of its own content (a flipped byte is detected)."""
        data = asdict(self)
        data[_SELF_SHA256] = _content_sha256(data)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: Path) -> Manifest:
        """Parse and type-check; any problem is a CorruptEntryError naming the entry."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            fmt = data.get("format")
            if fmt != MANIFEST_FORMAT:
                raise ValueError(f"manifest format {fmt!r}, this version reads {MANIFEST_FORMAT}")
            if data.pop(_SELF_SHA256, None) != _content_sha256(data):
                raise ValueError("its content does not match its own checksum")
            data["files"] = [FileRecord(**f) for f in data["files"]]
            manifest = cls(**data)
            _check_types(manifest)
            return manifest
        except (ValueError, TypeError, KeyError) as exc:
            raise CorruptEntryError(f"{where}: unreadable manifest: {exc}") from exc


def _content_sha256(data: dict[str, Any]) -> str:
    """SHA-256 of a manifest's fields as canonical JSON (without the checksum field itself)."""
    text = json.dumps(
        {k: v for k, v in data.items() if k != _SELF_SHA256}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _check_types(m: Manifest) -> None:
    if not isinstance(m.key, dict) or not isinstance(m.key_digest, str):
        raise TypeError("key must be an object and key_digest a string")
    for f in m.files:
        if not (isinstance(f.name, str) and isinstance(f.size, int) and isinstance(f.sha256, str)):
            raise TypeError(f"bad file record {f}")
        if "/" in f.name or "\\" in f.name or f.name.startswith("."):
            raise TypeError(f"file name {f.name!r} is not a plain file name")


async def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks with aiofiles."""
    h = hashlib.sha256()
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


async def record_files(folder: Path, names: list[str]) -> list[FileRecord]:
    """Size and SHA-256 of each named file in ``folder``."""
    return [FileRecord(n, (folder / n).stat().st_size, await sha256_file(folder / n)) for n in names]


async def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_NAME
    if path.is_symlink():  # never read through a link: its target may lie outside the cache
        raise CorruptEntryError(f"{folder}: {MANIFEST_NAME} is a symbolic link")
    try:
        async with aiofiles.open(path, encoding="utf-8") as f:
            text = await f.read()
    except FileNotFoundError:
        raise CorruptEntryError(f"{folder}: no manifest (a partial entry)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptEntryError(f"{folder}: cannot read manifest: {exc}") from exc
    return Manifest.from_json(text, folder)


async def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically: a temporary file, fsync, then rename over."""
    tmp = folder / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    async with aiofiles.open(tmp, "w", encoding="utf-8") as f:
        await f.write(manifest.to_json())
        await f.flush()
        os.fsync(f.fileno())
    make_private(tmp)
    os.replace(tmp, folder / MANIFEST_NAME)


def make_private(path: Path) -> None:
    """Owner-only permissions, whatever the umask: 0o700 for a folder, 0o600 for a file."""
    path.chmod(0o700 if path.is_dir() else 0o600)


async def verify_files(folder: Path, manifest: Manifest) -> list[str]:
    """Problems with the entry's files (missing, wrong size, wrong checksum); empty when sound."""
    problems = []
    for rec in manifest.files:
        path = folder / rec.name
        if path.is_symlink():
            problems.append(f"{rec.name} is a symbolic link")
        elif not path.is_file():
            problems.append(f"{rec.name} is missing")
        elif path.stat().st_size != rec.size:
            problems.append(f"{rec.name} is {path.stat().st_size} bytes, manifest says {rec.size}")
        elif await sha256_file(path) != rec.sha256:
            problems.append(f"{rec.name} checksum differs from the manifest")
    return problems
