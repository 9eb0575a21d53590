"""``model-manager cache ls | verify | prune | clear``: the CLI's view of the artifact cache."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from .cache import ArtifactCache, clear, prune, scan, verify_all
from .config import ModelConfig
from .errors import ModelInputError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GB``, ``1048576`` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ModelInputError(f"expected a size like 500M or 2G, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def add_cache_parser(sub: Any) -> None:
    p = sub.add_parser("cache", help="list, verify, prune or clear the artifact cache")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    ls = csub.add_parser("ls", help="entries with strategy, size, last use")
    ls.add_argument("--json", action="store_true", help="print JSON")
    v = csub.add_parser("verify", help="check every entry's checksums; move bad ones aside (exit 1 if any)")
    v.add_argument("--json", action="store_true", help="print JSON")
    pr = csub.add_parser("prune", help="delete least recently used entries down to a size")
    pr.add_argument("--max-size", required=True, type=parse_size, help="e.g. 2G, 500M")
    pr.add_argument("--json", action="store_true", help="print JSON")
    c = csub.add_parser("clear", help="delete every entry and the quarantine")
    c.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    c.add_argument("--json", action="store_true", help="print JSON")


async def run_cache_command(args: argparse.Namespace, config: ModelConfig) -> tuple[Any, int]:
    """(result, exit code) of a cache action."""
    cache = ArtifactCache(config.cache_dir)
    if args.cache_command == "ls":
        return {"cache_dir": str(cache.root), "entries": [e.to_dict() for e in await scan(cache)]}, 0
    if args.cache_command == "verify":
        results = await verify_all(cache)
        return {"cache_dir": str(cache.root), "entries": results}, int(any(not r["ok"] for r in results))
    if args.cache_command == "prune":
        return {"cache_dir": str(cache.root), "removed": await prune(cache, args.max_size)}, 0
    if not args.yes and not _confirm(f"delete everything under {cache.root}? [y/N] "):
        return {"cache_dir": str(cache.root), "cleared": 0, "cancelled": True}, 1
    return {"cache_dir": str(cache.root), "cleared": clear(cache)}, 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ModelInputError("refusing to clear the cache without --yes (no terminal to ask on)")
    return input(question).strip().lower() in ("y", "yes")


def format_cache(action: str, result: dict[str, Any]) -> str:
    """Human-readable rendering of a cache action's result."""
    head = f"cache: {result['cache_dir']}"
    if action == "ls":
        rows = [
            f"{e['entry']}  {e['backend'] or '-'}  {e['size_bytes'] / 1e6:.1f} MB  "
            f"last used {_ago(e['last_used'])}" + (f"  PROBLEM: {e['problem']}" if e["problem"] else "")
            for e in result["entries"]
        ]
        return "\n".join([head, *rows] if rows else [head, "(empty)"])
    if action == "verify":
        rows = [
            f"{'ok ' if r['ok'] else 'BAD'} {r['entry']}"
            + ("" if r["ok"] else f": {'; '.join(r['problems'])}")
            for r in result["entries"]
        ]
        return "\n".join([head, *rows] if rows else [head, "(empty)"])
    if action == "prune":
        freed = sum(r["size_bytes"] for r in result["removed"])
        return f"{head}\nremoved {len(result['removed'])} entries, {freed / 1e6:.1f} MB"
    if result.get("cancelled"):
        return f"{head}\nnothing deleted"
    return f"{head}\ncleared ({result['cleared']} folders)"


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    minutes = (time.time() - ts) / 60
    return f"{minutes:.0f} min ago" if minutes < 120 else f"{minutes / 60:.0f} h ago"
