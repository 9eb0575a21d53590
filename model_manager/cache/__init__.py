"""The artifact cache: keys, manifests, atomic single-flight builds, verification, housekeeping."""

from .housekeeping import EntryInfo, clear, prune, remove_abandoned_builds, scan, verify_all
from .key import CacheKey, canonical_json, make_key, toolchain_versions
from .manifest import MANIFEST_NAME, FileRecord, Manifest
from .store import ArtifactCache, BuildOutput, CacheEntry

__all__ = [
    "MANIFEST_NAME",
    "ArtifactCache",
    "BuildOutput",
    "CacheEntry",
    "CacheKey",
    "EntryInfo",
    "FileRecord",
    "Manifest",
    "canonical_json",
    "clear",
    "make_key",
    "prune",
    "remove_abandoned_builds",
    "scan",
    "toolchain_versions",
    "verify_all",
]
