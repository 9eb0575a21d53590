"""Scenario 7: hostile checkpoints, names and cache contents are refused without harm.

Promises checked:

- A checkpoint whose pickle would run code (``torch.save`` or a plain pickle, named .pth / .pt /
  .pkl / .ckpt / .bin) is refused by ``register_checkpoint`` with ``UnsafeCheckpointError`` (an
  ASCII pickle, which has no binary header, with ``CheckpointError``); the code never runs.
- A safetensors file with a hostile header (huge header length, a length past the end of the
  file, a header that is not JSON, offsets past the data) is a ``CheckpointError`` naming the file.
- Hostile model names (separators, ``..``, absolute paths, NUL, a trailing newline, whitespace,
  too long, unicode look-alikes) are refused with ``InvalidNameError`` by ``register_checkpoint``,
  ``register_model``, ``load_optimized_model``, ``load_real_model`` and the command line; nothing
  is created on the filesystem.
- A symbolic link in the cache pointing outside it (the entry folder, an artifact file, the
  manifest, a parent folder) is not served: it is moved aside, logged, and the model is rebuilt
  inside the cache. The outside files are never read, modified or deleted, neither by the load
  nor by ``verify_all``, ``prune`` or ``clear``.
- The cache is private: its root, every folder down to the entries, ``.locks`` and ``.quarantine``
  are mode 0o700 under umask 0o022 and 0o000, and no file it writes is group- or world-writable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from model_manager import CheckpointError, InvalidNameError, ModelConfig, ModelManager, UnsafeCheckpointError
from model_manager.cache import ArtifactCache, clear, prune, verify_all
from model_manager.cli import main
from model_manager.models import all_architectures
from model_manager.samples import sample_batch

MODEL = ("super_resolution", "espcn-x2")


def _config(root: Path) -> ModelConfig:
    return ModelConfig(cache_dir=root, device="cpu", build_in_subprocess=False, auto_time_budget_s=0.2)


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# -- checkpoints that would run code ------------------------------------------------------------
class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., None], tuple[Path]]:
        return (Path.touch, (self.marker,))


def _write_evil(path: Path, marker: Path, writer: str) -> None:
    payload = {"conv1.weight": _Payload(marker), "conv1.bias": torch.zeros(3)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=0 if writer == "ascii pickle" else 2)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".pkl", ".ckpt", ".bin"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle", "ascii pickle"])
async def test_a_checkpoint_that_would_run_code_is_refused_unrun(
    tmp_path: Path, writer: str, suffix: str
) -> None:
    """register_checkpoint refuses a code-running pickle and the code never runs."""
    marker, path = tmp_path / "code_ran", tmp_path / f"evil{suffix}"
    _write_evil(path, marker, writer)
    expected = CheckpointError if writer == "ascii pickle" else UnsafeCheckpointError
    async with ModelManager(_config(tmp_path / "cache")) as manager:
        with pytest.raises(expected) as info:
            await manager.register_checkpoint(*MODEL[:1], "evil", path)
        assert not any(e["name"] == "evil" for e in manager.list_models(MODEL[0])), "evil got registered"
    assert path.name in str(info.value), f"the error should name {path.name}: {info.value}"
    assert not marker.exists(), f"{writer} {suffix}: the pickled code ran (marker {marker} exists)"


def _safetensors(header: bytes, length: int | None = None, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + data


HOSTILE_SAFETENSORS = {
    "huge header length": _safetensors(b"{}", length=2**62),
    "header past the end of the file": _safetensors(b"{}", length=10_000),
    "header not JSON": _safetensors(b"\x80\x04not json at all!"),
    "offsets past the data": _safetensors(
        b'{"conv1.weight":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}', data=b"\0" * 16
    ),
    "empty file": b"",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_SAFETENSORS))
async def test_a_safetensors_file_with_a_hostile_header_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    """A hostile safetensors header is a CheckpointError naming the file, not a crash or a huge allocation."""
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(HOSTILE_SAFETENSORS[kind])
    async with ModelManager(_config(tmp_path / "cache")) as manager:
        with pytest.raises(CheckpointError, match=r"cannot read hostile\.safetensors as safetensors"):
            await manager.register_checkpoint(MODEL[0], "hostile", path)


# -- hostile names ------------------------------------------------------------------------------
HOSTILE_NAMES = [
    "a/b",
    "a\\b",
    "..",
    "../escape",
    "a..b",
    "/tmp/model-manager-hostile-absolute",
    "a\x00b",
    "abc\n",
    "abc\r",
    " abc",
    "abc ",
    "a b",
    "\t",
    "",
    ".hidden",
    "x" * 65,
    "x" * 129,
    "\u0435spcn-x2",  # Cyrillic e
    "espcn\u2010x2",  # Unicode hyphen
    "\uff45\uff53\uff50\uff43\uff4e",  # fullwidth letters
    "e\u0301",  # combining accent
    "C:evil",
    "~",
]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A valid ESPCN checkpoint, so that only the name can be wrong."""
    arch = all_architectures()["ESPCN"]
    module = arch.create({"channels": 3, "upscale": 2, "feat1": 8, "feat2": 8, "feat3": 4}).module
    path = tmp_path / "ok.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


async def _every_entry_point_refuses(manager: ModelManager, name: str, checkpoint: Path) -> list[str]:
    """The public entry points that did not raise InvalidNameError for ``name``."""
    descriptor = all_architectures()["ESPCN"].descriptor({"channels": 3, "upscale": 2})
    calls = {
        "register_checkpoint": lambda: manager.register_checkpoint(MODEL[0], name, checkpoint),
        "load_optimized_model": lambda: manager.load_optimized_model(MODEL[0], name, "onnx"),
        "load_real_model": lambda: manager.load_real_model(MODEL[0], name),
    }
    accepted = []
    for label, call in calls.items():
        try:
            await call()
            accepted.append(f"{label} accepted it")
        except InvalidNameError:
            pass
        except Exception as exc:  # any other outcome is a failure to report
            accepted.append(f"{label} raised {type(exc).__name__}: {exc}")
    try:
        manager.register_model(MODEL[0], name, torch.nn.Identity, descriptor)
        accepted.append("register_model accepted it")
    except InvalidNameError:
        pass
    return accepted


async def test_hostile_names_are_refused_everywhere_and_create_nothing(
    tmp_path: Path, checkpoint: Path
) -> None:
    """Every hostile name is an InvalidNameError at every manager entry point; the filesystem is untouched."""
    absolute = Path("/tmp/model-manager-hostile-absolute")
    before = _tree(tmp_path)
    failures = {}
    async with ModelManager(_config(tmp_path / "cache")) as manager:
        for name in HOSTILE_NAMES:
            accepted = await _every_entry_point_refuses(manager, name, checkpoint)
            if accepted:
                failures[repr(name)] = accepted
    assert failures == {}, f"hostile names not refused: {failures}"
    assert _tree(tmp_path) == before, f"created: {sorted(_tree(tmp_path) - before)}"
    assert not absolute.exists(), f"{absolute} was created"


@pytest.mark.parametrize("name", ["../escape", "a/b", "abc\n", "\u0435spcn-x2", "x" * 129])
def test_the_command_line_refuses_hostile_names(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model-manager optimize TYPE NAME` exits 1 naming the bad name; nothing is created."""
    monkeypatch.setenv("MODEL_MANAGER_CACHE_DIR", str(tmp_path / "cache"))
    before = _tree(tmp_path)
    code = main(["-q", "optimize", MODEL[0], name, "--optimization", "onnx"])
    err = capsys.readouterr().err
    assert code == 1, f"expected exit code 1 for {name!r}, got {code}; stderr: {err}"
    assert "model name must be" in err and repr(name) in err, f"stderr does not name {name!r}: {err}"
    assert _tree(tmp_path) == before, f"created: {sorted(_tree(tmp_path) - before)}"


# -- symbolic links out of the cache ------------------------------------------------------------
def _build(root: Path) -> Path:
    async def build() -> Path:
        async with ModelManager(_config(root)) as manager:
            return Path((await manager.load_optimized_model(*MODEL, "onnx")).info.artifact_path)

    return asyncio.run(build())


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A cache holding one real onnx entry of espcn-x2: (root, entry folder relative to it)."""
    root = tmp_path_factory.mktemp("pristine")
    return root, _build(root).relative_to(root)


def _link_entry(entry: Path, outside: Path) -> None:
    shutil.copytree(entry, outside / entry.name)
    shutil.rmtree(entry)
    entry.symlink_to(outside / entry.name, target_is_directory=True)


def _link_file(name: str) -> Callable[[Path, Path], None]:
    def link(entry: Path, outside: Path) -> None:
        shutil.copy(entry / name, outside / name)
        (entry / name).unlink()
        (entry / name).symlink_to(outside / name)

    return link


def _link_parent(entry: Path, outside: Path) -> None:
    name_dir = entry.parents[1]  # <cache>/<type>/<name>
    shutil.copytree(name_dir, outside / name_dir.name)
    shutil.rmtree(name_dir)
    name_dir.symlink_to(outside / name_dir.name, target_is_directory=True)


LINKS: dict[str, Callable[[Path, Path], None]] = {
    "entry folder": _link_entry,
    "artifact file": _link_file("model.onnx"),
    "manifest": _link_file("manifest.json"),
    "parent folder <type>/<name>": _link_parent,
}


def _unread(outside: Path) -> dict[str, tuple[bytes, int, int]]:
    """Fingerprints taken without leaving a read behind: bytes read first, then atime reset."""
    prints = {}
    for p in sorted(outside.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            os.utime(p, ns=(0, p.stat().st_mtime_ns))
            prints[p.relative_to(outside).as_posix()] = (data, p.stat().st_mtime_ns, 0)
    return prints


def _changes(outside: Path, before: dict[str, tuple[bytes, int, int]], atime_works: bool) -> list[str]:
    """How the outside files differ from ``before``: deleted, modified, or read."""
    problems = []
    for rel, (data, mtime, _atime) in before.items():
        p = outside / rel
        if not p.is_file():
            problems.append(f"{rel} was deleted")
            continue
        st = p.stat()
        if atime_works and st.st_atime_ns != 0:
            problems.append(f"{rel} was read")
        if p.read_bytes() != data or st.st_mtime_ns != mtime:
            problems.append(f"{rel} was modified")
        os.utime(p, ns=(0, mtime))  # our own read above must not look like the cache's next time
    return problems


@pytest.fixture(scope="module")
def atime_works(tmp_path_factory: pytest.TempPathFactory) -> bool:
    """Whether this filesystem records reads (atime), so that 'never read' can be checked."""
    probe = tmp_path_factory.mktemp("atime") / "probe"
    probe.write_bytes(b"x")
    os.utime(probe, ns=(0, probe.stat().st_mtime_ns))
    probe.read_bytes()
    return probe.stat().st_atime_ns != 0


def _linked_cache(pristine: tuple[Path, Path], tmp_path: Path, kind: str) -> tuple[Path, Path, Path]:
    root, outside = tmp_path / "cache", tmp_path / "outside"
    shutil.copytree(pristine[0], root, symlinks=True)
    outside.mkdir()
    LINKS[kind](root / pristine[1], outside)
    return root, root / pristine[1], outside


@pytest.mark.parametrize("kind", sorted(LINKS))
async def test_a_symlink_out_of_the_cache_is_not_followed_and_the_model_is_rebuilt_inside(
    pristine: tuple[Path, Path],
    tmp_path: Path,
    kind: str,
    atime_works: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A linked entry is moved aside and logged; a fresh entry is built inside; the outside is untouched."""
    root, entry, outside = _linked_cache(pristine, tmp_path, kind)
    before = _unread(outside)
    async with ModelManager(_config(root)) as manager:
        runner = await manager.load_optimized_model(*MODEL, "onnx")
        x = sample_batch(runner.descriptor, (32, 32))[0]
        module = await manager.load_real_model(*MODEL)
        with torch.inference_mode():
            np.testing.assert_allclose(await runner.infer(x), module(torch.from_numpy(x)).numpy(), atol=1e-4)
    served = Path(runner.info.artifact_path)
    assert not runner.info.cache_hit, f"{kind}: the linked entry was served as a cache hit"
    assert served == entry and served.resolve() == served, (
        f"{kind}: served from {served.resolve()}, not {entry}"
    )
    assert not any(p.is_symlink() for p in root.rglob("*") if ".quarantine" not in p.parts)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(entry) in m and "symbolic link" in m for m in warned), (
        f"no WARNING names {entry}: {warned}"
    )
    assert list((root / ".quarantine").rglob("QUARANTINE_REASON.txt")), "nothing moved to .quarantine"
    assert _changes(outside, before, atime_works) == []


@pytest.mark.parametrize("kind", sorted(LINKS))
async def test_housekeeping_never_follows_a_symlink_out_of_the_cache(
    pristine: tuple[Path, Path], tmp_path: Path, kind: str, atime_works: bool
) -> None:
    """verify_all, prune and clear on a cache holding a link: the outside files stay, unread and unmodified."""
    root, _entry, outside = _linked_cache(pristine, tmp_path, kind)
    before = _unread(outside)
    cache = ArtifactCache(root)
    report = await verify_all(cache)
    assert _changes(outside, before, atime_works) == [], f"verify_all: {report}"
    await prune(cache, max_bytes=0)
    assert _changes(outside, before, atime_works) == [], "prune"
    clear(cache)
    assert _changes(outside, before, atime_works) == [], "clear"
    leftover = [p for p in root.rglob("*") if p.name != ".locks" and ".locks" not in p.parts]
    assert leftover == [], f"clear left {leftover}"


# -- private permissions ------------------------------------------------------------------------
@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


async def test_the_cache_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """Root, every folder, .locks and .quarantine are 0o700; no file is group- or world-writable."""
    root = tmp_path / "cache"
    async with ModelManager(_config(root)) as manager:
        runner = await manager.load_optimized_model(*MODEL, "onnx")
    (Path(runner.info.artifact_path) / "model.onnx").write_bytes(b"")  # corrupt: verify moves it aside
    await verify_all(ArtifactCache(root))
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert {".locks", ".quarantine"} <= {p.name for p in folders}
    loose = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p in folders
        if stat.S_IMODE(p.stat().st_mode) != 0o700
    }
    assert loose == {}, f"umask {umask:#o}: folders not 0o700: {loose}"
    files = [p for p in root.rglob("*") if p.is_file()]
    writable = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files if p.stat().st_mode & 0o022}
    assert files and writable == {}, f"umask {umask:#o}: group/world-writable files: {writable}"
