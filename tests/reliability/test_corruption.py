"""Scenario 3: corrupt cache entries, on real artifacts, are detected, moved aside, logged and rebuilt.

Promises checked, on real entries of super_resolution/espcn-x2 (``onnx``, and ``int8-static``):

- Detected: every corruption kind applied to every file of an entry (each artifact file and
  ``manifest.json``: truncated, a flipped byte at the start, middle and end, deleted, emptied, a
  byte appended, replaced by a folder) and to the manifest's content (wrong checksum, wrong size, a
  record naming a file outside the folder, a future format, an edited key or key digest, an edit
  that does not re-sign the manifest, not JSON, not an object, binary garbage, the manifest or the
  whole folder of another entry) makes ``ArtifactCache.load`` return None: it is never served.
- Every single-byte flip anywhere in ``manifest.json`` is detected (the manifest carries the
  SHA-256 of its own content).
- Moved aside: the entry folder leaves its place and lands under ``<cache>/.quarantine/`` with a
  ``QUARANTINE_REASON.txt`` that says what was wrong.
- Logged: a WARNING names the entry's folder.
- Rebuilt: the next ``load_optimized_model`` builds a fresh entry (not a cache hit) in the same
  place, whose runner matches the FP32 module, and the load after that is a hit. CI proves it once
  per way of detecting (size, checksum, missing file, missing manifest, format, key,
  self-checksum); the soak variant rebuilds every kind for both entries and adds int8-dynamic and
  bf16 entries to the detection sweep.

The counts (cases, detected, rebuilt) are printed and recorded with ``record_property``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ModelConfig, ModelManager
from model_manager.cache import MANIFEST_NAME, ArtifactCache, CacheKey, FileRecord, Manifest
from model_manager.cache.manifest import MANIFEST_FORMAT
from model_manager.config import QualityGates
from model_manager.optim.quality import compare
from model_manager.samples import sample_batch

MODEL = ("super_resolution", "espcn-x2")
FAST = ("onnx", "int8-static")
SOAK = ("int8-dynamic", "bf16")
REASON = "QUARANTINE_REASON.txt"
_KEY_FIELDS = ("format", "model_type", "name", "weights_sha256", "strategy")


def _config(root: Path) -> ModelConfig:
    """CPU, built in-process (fast), a short timing budget, an INT8 gate the trained ESPCN passes."""
    return ModelConfig(
        cache_dir=root,
        device="cpu",
        build_in_subprocess=False,
        auto_time_budget_s=0.2,
        quality=QualityGates(int8_min_psnr=20.0),
    )


@dataclass(frozen=True)
class Pristine:
    """A cache folder holding one sound entry per strategy, built once per module."""

    root: Path
    entries: dict[str, Path]  # strategy -> entry folder, relative to root

    def key(self, strategy: str) -> CacheKey:
        return _key_of(self.root / self.entries[strategy])


def _key_of(folder: Path) -> CacheKey:
    """The CacheKey an entry was published under, rebuilt from its manifest (checked by its digest)."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    k = manifest["key"]
    fields = {n: v for n, v in k.items() if n not in _KEY_FIELDS}
    key = CacheKey(k["model_type"], k["name"], k["weights_sha256"], k["strategy"], fields)
    assert key.digest == manifest["key_digest"], (
        f"rebuilt key {key.digest} != manifest {manifest['key_digest']}"
    )
    return key


async def _build(root: Path, strategies: tuple[str, ...]) -> dict[str, Path]:
    entries = {}
    async with ModelManager(_config(root)) as manager:
        for strategy in strategies:
            runner = await manager.load_optimized_model(*MODEL, strategy)
            assert not runner.info.cache_hit, f"{strategy}: expected a fresh build in an empty cache"
            entries[strategy] = Path(runner.info.artifact_path).relative_to(root)
    return entries


def _pristine(factory: pytest.TempPathFactory, strategies: tuple[str, ...]) -> Pristine:
    root = factory.mktemp("pristine")
    return Pristine(root, asyncio.run(_build(root, strategies)))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    return _pristine(tmp_path_factory, FAST)


# -- corruption kinds -------------------------------------------------------------------------
Corrupt = Callable[[Path, str], None]  # (entry folder, file name) -> None


def _flip_at(fraction: float) -> Corrupt:
    def flip(folder: Path, name: str) -> None:
        data = bytearray((folder / name).read_bytes())
        data[min(int(len(data) * fraction), len(data) - 1)] ^= 0x01
        (folder / name).write_bytes(bytes(data))

    return flip


def _to_folder(folder: Path, name: str) -> None:
    (folder / name).unlink()
    (folder / name).mkdir()


FILE_KINDS: dict[str, Corrupt] = {
    "truncated": lambda f, n: (f / n).write_bytes((f / n).read_bytes()[: (f / n).stat().st_size // 2]),
    "first byte flipped": _flip_at(0.0),
    "middle byte flipped": _flip_at(0.5),
    "last byte flipped": _flip_at(1.0),
    "deleted": lambda f, n: (f / n).unlink(),
    "emptied": lambda f, n: (f / n).write_bytes(b""),
    "NUL byte appended": lambda f, n: (f / n).write_bytes((f / n).read_bytes() + b"\0"),
    "replaced by a folder": _to_folder,
}


def _resigned(change: Callable[[Manifest, str], None]) -> Corrupt:
    """Edit the manifest and write it with a valid self-checksum, so only the edit itself is wrong."""

    def apply(folder: Path, record: str) -> None:
        manifest = Manifest.from_json((folder / MANIFEST_NAME).read_text(), folder)
        change(manifest, record)
        (folder / MANIFEST_NAME).write_text(manifest.to_json())

    return apply


def _record_change(field: str, value: Callable[[FileRecord], object]) -> Corrupt:
    def change(m: Manifest, record: str) -> None:
        m.files = [replace(r, **{field: value(r)}) if r.name == record else r for r in m.files]

    return _resigned(change)


RECORD_KINDS: dict[str, Corrupt] = {  # applied to each artifact file's record in the manifest
    "record: wrong checksum": _record_change("sha256", lambda r: "0" * 64),
    "record: wrong size": _record_change("size", lambda r: r.size + 1),
    "record: names a file outside the folder": _record_change("name", lambda r: f"../{r.name}"),
}


def _unsigned_edit(folder: Path, _name: str) -> None:
    data = json.loads((folder / MANIFEST_NAME).read_text())
    data["decision"]["chosen"] += "-edited"  # a real change whatever the entry chose
    (folder / MANIFEST_NAME).write_text(json.dumps(data, indent=2, sort_keys=True))


MANIFEST_KINDS: dict[str, Corrupt] = {
    "manifest: future format": _resigned(lambda m, _: setattr(m, "format", MANIFEST_FORMAT + 1)),
    "manifest: key edited": _resigned(lambda m, _: setattr(m, "key", {**m.key, "name": "other"})),
    "manifest: key digest edited": _resigned(lambda m, _: setattr(m, "key_digest", "0" * 64)),
    "manifest: edited without re-signing": _unsigned_edit,
    "manifest: not JSON": lambda f, _: (f / MANIFEST_NAME).write_text("{not json"),
    "manifest: JSON but not an object": lambda f, _: (f / MANIFEST_NAME).write_text("[]"),
    "manifest: binary garbage": lambda f, _: (f / MANIFEST_NAME).write_bytes(bytes(range(255, -1, -1))),
}


def _foreign(pristine: Pristine, strategy: str, whole_folder: bool) -> Corrupt:
    """The manifest, or the whole folder, of another real entry put in this entry's place."""
    other = pristine.root / pristine.entries[next(s for s in pristine.entries if s != strategy)]

    def apply(folder: Path, _name: str) -> None:
        if whole_folder:
            shutil.rmtree(folder)
            shutil.copytree(other, folder)
        else:
            shutil.copy(other / MANIFEST_NAME, folder / MANIFEST_NAME)

    return apply


@dataclass(frozen=True)
class Case:
    strategy: str
    kind: str
    file: str
    corrupt: Corrupt

    def __str__(self) -> str:
        return f"{self.strategy}: {self.kind} ({self.file})"


def cases(pristine: Pristine) -> Iterator[Case]:
    """Every kind on every file it applies to, for every pristine entry."""
    for strategy, rel in pristine.entries.items():
        artifacts = [
            r["name"] for r in json.loads((pristine.root / rel / MANIFEST_NAME).read_text())["files"]
        ]
        for name in [*artifacts, MANIFEST_NAME]:
            for kind, corrupt in FILE_KINDS.items():
                yield Case(strategy, kind, name, corrupt)
        for name in artifacts:
            for kind, corrupt in RECORD_KINDS.items():
                yield Case(strategy, kind, name, corrupt)
        for kind, corrupt in MANIFEST_KINDS.items():
            yield Case(strategy, kind, MANIFEST_NAME, corrupt)
        if len(pristine.entries) > 1:
            yield Case(
                strategy, "another entry's manifest", MANIFEST_NAME, _foreign(pristine, strategy, False)
            )
            yield Case(strategy, "another entry's folder", "(folder)", _foreign(pristine, strategy, True))


# -- checks -----------------------------------------------------------------------------------
def _copy(pristine: Pristine, dest: Path) -> Path:
    shutil.copytree(pristine.root, dest, symlinks=True)
    return dest


def _moved_aside_and_logged(root: Path, folder: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What is missing of 'under .quarantine/ with a reason, and a WARNING naming the entry'."""
    problems = []
    reasons = list((root / ".quarantine").rglob(REASON))
    if len(reasons) != 1 or not reasons[0].read_text().strip():
        problems.append(f"expected one non-empty {REASON} under .quarantine, found {reasons}")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and str(folder) in r.getMessage()]
    if not warned:
        problems.append(f"no WARNING names {folder}; logged: {[r.getMessage() for r in caplog.records]}")
    return problems


async def _detect(pristine: Pristine, case: Case, root: Path, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Apply one case to a copy of the pristine cache and load it; the problems found (empty: detected)."""
    _copy(pristine, root)
    folder = root / pristine.entries[case.strategy]
    case.corrupt(folder, case.file)
    caplog.clear()
    entry = await ArtifactCache(root).load(pristine.key(case.strategy))
    if entry is not None:
        return [f"served a corrupt entry from {entry.path}"]
    if folder.exists():
        return [f"{folder} is still in place"]
    return _moved_aside_and_logged(root, folder, caplog)


async def _detect_all(
    pristine: Pristine, tmp_path: Path, caplog: pytest.LogCaptureFixture, record_property: Callable
) -> None:
    all_cases = list(cases(pristine))
    failures = {}
    for i, case in enumerate(all_cases):
        problems = await _detect(pristine, case, tmp_path / f"case-{i}", caplog)
        if problems:
            failures[str(case)] = problems
        shutil.rmtree(tmp_path / f"case-{i}")
    detected = len(all_cases) - len(failures)
    print(f"\ncorruption detection: {len(all_cases)} cases, {detected} detected and quarantined")
    record_property("cases", len(all_cases))
    record_property("detected", detected)
    assert failures == {}, f"{len(failures)} of {len(all_cases)} cases not handled: {failures}"


async def test_every_kind_on_every_file_is_detected_and_moved_aside(
    pristine: Pristine, tmp_path: Path, caplog: pytest.LogCaptureFixture, record_property: Callable
) -> None:
    """Every corruption kind on every file of a real onnx and int8-static entry: not served, moved aside, logged."""
    await _detect_all(pristine, tmp_path, caplog, record_property)


@pytest.mark.slow
async def test_every_single_byte_flip_of_the_manifest_is_detected(
    pristine: Pristine, tmp_path: Path, record_property: Callable
) -> None:
    """A flipped bit at any offset of manifest.json is detected (its own SHA-256 covers every field).

    The only flips served are those that leave the manifest meaning exactly the same: a float's
    digit beyond double precision (``...4333682`` and ``...4333683`` parse to the same number).
    """
    root = _copy(pristine, tmp_path / "cache")
    cache, key = ArtifactCache(root), pristine.key("onnx")
    folder, source = root / pristine.entries["onnx"], pristine.root / pristine.entries["onnx"]
    raw = (source / MANIFEST_NAME).read_bytes()
    same, changed = [], []
    logging.getLogger("model_manager.cache").disabled = True  # thousands of expected warnings
    try:
        for offset in range(len(raw)):
            if not folder.exists():
                shutil.copytree(source, folder)
            flipped = raw[:offset] + bytes([raw[offset] ^ 0x01]) + raw[offset + 1 :]
            (folder / MANIFEST_NAME).write_bytes(flipped)
            if await cache.load(key) is not None:
                (same if json.loads(flipped) == json.loads(raw) else changed).append(offset)
    finally:
        logging.getLogger("model_manager.cache").disabled = False
    detected = len(raw) - len(same) - len(changed)
    print(
        f"\nmanifest byte flips: {len(raw)} cases, {detected} detected, {len(same)} served meaning the same"
    )
    record_property("manifest_flip_cases", len(raw))
    record_property("manifest_flip_detected", detected)
    record_property("manifest_flip_same_meaning", len(same))
    assert changed == [], f"{len(changed)} flips that change the manifest were served: {changed[:10]}"
    assert len(same) <= 10, f"expected only a few float-precision flips to be harmless, got {len(same)}"


# -- rebuild ----------------------------------------------------------------------------------
# One kind per detector (size, checksum, missing file, missing manifest, format, key, self-checksum):
# a rebuild costs ~3 s on 2 cores, so CI proves each way of detecting once; soak does every kind.
CI_REBUILDS = (
    ("truncated", "model.onnx"),
    ("middle byte flipped", "model.onnx"),
    ("deleted", "model.onnx"),
    ("deleted", MANIFEST_NAME),
    ("manifest: future format", MANIFEST_NAME),
    ("another entry's folder", "(folder)"),
    ("manifest: edited without re-signing", MANIFEST_NAME),
)


def _pick(pristine: Pristine, strategy: str, only: tuple[tuple[str, str], ...] = ()) -> list[Case]:
    """Each kind once (on the first file it applies to), or just the (kind, file) pairs in ``only``."""
    chosen = [c for c in cases(pristine) if c.strategy == strategy and (not only or (c.kind, c.file) in only)]
    if only:
        assert len(chosen) == len(only), f"expected cases {only}, found {[str(c) for c in chosen]}"
        return chosen
    return list({c.kind: c for c in reversed(chosen)}.values())


async def _reference(manager: ModelManager, x: np.ndarray) -> np.ndarray:
    module = await manager.load_real_model(*MODEL)
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


async def _rebuild_problems(
    pristine: Pristine, case: Case, root: Path, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """Corrupt a copy, load through the manager: a fresh build in place, matching FP32, then a hit."""
    _copy(pristine, root)
    folder = root / pristine.entries[case.strategy]
    case.corrupt(folder, case.file)
    caplog.clear()
    async with ModelManager(_config(root)) as manager:
        runner = await manager.load_optimized_model(*MODEL, case.strategy)
        x = sample_batch(runner.descriptor, (32, 32))[0]
        got, expected = await runner.infer(x), await _reference(manager, x)
    problems = _moved_aside_and_logged(root, folder, caplog)
    if runner.info.cache_hit or Path(runner.info.artifact_path) != folder:
        problems.append(
            f"expected a fresh build in {folder}, got hit={runner.info.cache_hit} at {runner.info.artifact_path}"
        )
    psnr = compare(expected, got).psnr_db
    if psnr < (60.0 if case.strategy == "onnx" else 20.0):
        problems.append(f"rebuilt runner is {psnr:.1f} dB from FP32")
    async with ModelManager(_config(root)) as manager:
        if not (await manager.load_optimized_model(*MODEL, case.strategy)).info.cache_hit:
            problems.append("the rebuilt entry was not a cache hit on the next load")
    return problems


async def _rebuild_each_kind(
    pristine: Pristine,
    strategy: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable,
    only: tuple[tuple[str, str], ...] = (),
) -> None:
    kinds = _pick(pristine, strategy, only)
    failures = {}
    for i, case in enumerate(kinds):
        problems = await _rebuild_problems(pristine, case, tmp_path / f"rebuild-{i}", caplog)
        if problems:
            failures[str(case)] = problems
    rebuilt = len(kinds) - len(failures)
    print(f"\n{strategy} rebuild: {len(kinds)} kinds, {rebuilt} rebuilt and matching FP32")
    record_property(f"{strategy}_rebuild_cases", len(kinds))
    record_property(f"{strategy}_rebuilt", rebuilt)
    assert failures == {}, f"{len(failures)} of {len(kinds)} kinds not rebuilt: {failures}"


@pytest.mark.slow
async def test_each_detector_leads_to_a_rebuilt_working_runner(
    pristine: Pristine, tmp_path: Path, caplog: pytest.LogCaptureFixture, record_property: Callable
) -> None:
    """After corruption of each detected sort, load_optimized_model rebuilds the onnx entry in place.

    The rebuilt runner matches FP32 and the next load is a cache hit.
    """
    await _rebuild_each_kind(pristine, "onnx", tmp_path, caplog, record_property, CI_REBUILDS)


@pytest.mark.soak
@pytest.mark.parametrize("strategy", FAST)
async def test_soak_every_kind_is_rebuilt(
    pristine: Pristine,
    strategy: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable,
) -> None:
    """Every kind rebuilt end to end, for the onnx and the int8-static entry (two artifact files)."""
    await _rebuild_each_kind(pristine, strategy, tmp_path, caplog, record_property)


@pytest.mark.soak
async def test_soak_more_strategies_every_kind_on_every_file(
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record_property: Callable,
) -> None:
    """Detection and quarantine for every kind on every file of int8-dynamic and bf16 entries too."""
    strategies = tuple(s for s in SOAK if s != "bf16" or _has_bf16())
    more = await asyncio.to_thread(_pristine, tmp_path_factory, ("onnx", *strategies))
    await _detect_all(more, tmp_path, caplog, record_property)


def _has_bf16() -> bool:
    from model_manager.optim.candidates.registry import available_candidates

    return "bf16" in available_candidates("cpu")


def test_the_cases_cover_every_file_of_each_entry(pristine: Pristine) -> None:
    """The case list really covers every file of each entry (so the counts above mean 'every file')."""
    for strategy, rel in pristine.entries.items():
        on_disk = sorted(p.name for p in (pristine.root / rel).iterdir())
        covered = sorted({c.file for c in cases(pristine) if c.strategy == strategy} - {"(folder)"})
        assert covered == on_disk, f"{strategy}: files {on_disk}, cases cover {covered}"
