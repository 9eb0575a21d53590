"""``model-manager cache ls | verify | prune | clear``: the CLI's view of the artifact cache."""

from __future__ import annotations

import argparse
import sys

from ..cache import ArtifactCache, clear, prune, scan, verify_all
from ..config import ModelConfig
from ..errors import ModelInputError
from .outcome import Outcome


async def cache(args: argparse.Namespace, config: ModelConfig) -> Outcome:
    """The action's data, with exit code 1 when ``verify`` found bad entries or ``clear`` was cancelled."""
    store = ArtifactCache(config.cache_dir)
    try:
        return await _action(args, store)
    finally:
        store.close()


async def _action(args: argparse.Namespace, store: ArtifactCache) -> Outcome:
    root = str(store.root)
    if args.cache_command == "ls":
        entries = [e.to_dict() for e in await scan(store)]
        return Outcome({"cache_dir": root, "entries": entries})
    if args.cache_command == "verify":
        results = await verify_all(store)
        return Outcome({"cache_dir": root, "entries": results}, int(any(not r["ok"] for r in results)))
    if args.cache_command == "prune":
        return Outcome({"cache_dir": root, "removed": await prune(store, args.max_size)})
    if not args.yes and not _confirm(f"delete everything under {root}? [y/N] "):
        return Outcome({"cache_dir": root, "cleared": 0, "cancelled": True}, 1)
    return Outcome({"cache_dir": root, "cleared": clear(store)})


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ModelInputError("refusing to clear the cache without --yes (no terminal to ask on)")
    return input(question).strip().lower() in ("y", "yes")
