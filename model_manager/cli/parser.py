"""The ``model-manager`` argument parser and its argument types (argparse only: nothing heavy imported).

``--optimization`` takes any name of :data:`model_manager.optim.strategies.NAMES` (any case, ``_``
for ``-``); an unknown name, like every other bad argument, is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UnknownStrategyError
from ..optim.strategies import AUTO, NAMES, parse_optimization

PROG = "model-manager"
EPILOG = "exit codes: 0 success, 1 a model_manager error (one line on stderr), 2 bad usage"


def optimization_name(text: str) -> str:
    """``--optimization``: a name of the strategy table, normalised; a usage error listing the names."""
    try:
        return parse_optimization(text)
    except UnknownStrategyError:
        raise argparse.ArgumentTypeError(f"unknown strategy {text!r}; valid: {', '.join(NAMES)}") from None


def image_size(text: str) -> tuple[int, int]:
    """``HxW`` (or one number for a square) -> (H, W); a usage error otherwise (exit 2)."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers (e.g. 256x256), got {text!r}")
    return int(parts[0]), int(parts[-1])


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GB``, ``1048576`` -> bytes (binary units); a usage error otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 500M or 2G, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _common() -> argparse.ArgumentParser:
    """-v / -q, accepted after the command too (``model-manager run ... -q``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging (-vv: debug)"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only on stderr"
    )
    return common


def _optimization(p: argparse.ArgumentParser, what: str = "strategy") -> None:
    p.add_argument(
        "--optimization",
        type=optimization_name,
        default=AUTO,
        metavar="NAME",
        help=f"{what}: {', '.join(NAMES)} (default {AUTO}; any case, '_' for '-')",
    )


def _checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint", type=Path, metavar="FILE", help="register this checkpoint file under NAME first"
    )


def _shape_range(p: argparse.ArgumentParser) -> None:
    """--max-size HxW [--max-batch N]: the input sizes the artifact must take (a ShapeRange)."""
    p.add_argument(
        "--max-size",
        type=image_size,
        metavar="HxW",
        help="largest input the artifact must take, e.g. 1080x1920 (default: the model's profile)",
    )
    p.add_argument(
        "--max-batch", type=int, default=4, metavar="N", help="with --max-size: largest batch (default 4)"
    )


def _json(p: argparse.ArgumentParser, what: str = "print JSON instead of text") -> None:
    p.add_argument("--json", action="store_true", help=f"{what} (build progress stays on stderr)")


def _model(p: argparse.ArgumentParser, what: str = "strategy") -> None:
    """TYPE NAME [--optimization auto] [--checkpoint FILE]: the model a command works on."""
    p.add_argument("model_type", metavar="TYPE", help="style_transfer, super_resolution or interpolation")
    p.add_argument("name", metavar="NAME", help="model name, or 'default'")
    _optimization(p, what)
    _checkpoint(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fast, verified inference for image and video models.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="errors only on stderr (no build progress)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_common()]

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=common, epilog=EPILOG)

    p = command("demo", "build a default model's optimization, measure it against FP32, process a clip")
    p.add_argument("--type", dest="model_type", default="super_resolution", help="model type (default SR)")
    p.add_argument("--name", default="default", help="model name (default: the type's default)")
    _optimization(p)
    _checkpoint(p)
    p.add_argument(
        "--out", type=Path, default=Path("model_manager_demo"), help="folder for the clip and result"
    )
    p.add_argument("--frames", type=int, default=24, help="clip length in frames (default 24)")
    p.add_argument("--size", type=int, default=128, help="clip frame size in pixels (default 128)")
    _json(p)

    p = command("optimize", "build (or load from the cache) a model's optimized artifact")
    _model(p)
    _shape_range(p)
    _json(p)

    p = command("bench", "every strategy on this machine against eager FP32 (nothing cached)")
    _model(p, "auto (every candidate) or one strategy")
    p.add_argument("--size", type=image_size, help="input HxW (default: the model's opt shape, 256x256)")
    p.add_argument("--plot", type=Path, help="also write a bar chart (PNG) here; needs matplotlib")
    p.add_argument("--compare", type=Path, help="also write input | FP32 | served | difference x10 (PNG)")
    _json(p)

    p = command("list", "registered models with their descriptors")
    p.add_argument("--type", dest="model_type", help="only this model type")
    _json(p)

    p = command("samples", "the real sample images shipped with the package")
    _json(p)

    p = command("inspect", "detect a checkpoint's architecture and hyperparameters")
    p.add_argument("checkpoint", type=Path)
    _json(p)

    p = command("run", "run a model on an image, a folder of images or a video")
    p.add_argument("model_type", metavar="TYPE", help="style_transfer, super_resolution or interpolation")
    p.add_argument("name", metavar="NAME", help="model name, or 'default'")
    p.add_argument("input", help="image, folder of images, video file (.mp4 ...), or sample:NAME")
    p.add_argument(
        "output", type=Path, help="output image, folder (for a folder) or video file (for a video)"
    )
    p.add_argument("--second", help="second frame (interpolation), path or sample:NAME")
    p.add_argument("--timestep", type=float, default=0.5, help="interpolation time in 0..1")
    p.add_argument(
        "--factor", type=int, default=2, help="interpolation of a folder or video: frame-rate multiplier"
    )
    p.add_argument("--batch-size", type=int, default=4, help="folder or video: frames per model call")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="folder or video on Ray Data: a local Ray, or the cluster at ADDRESS (needs the ray extra)",
    )
    p.add_argument("--actors", type=int, default=2, metavar="N", help="with --ray: actors, one runner each")
    _checkpoint(p)
    _optimization(p)
    _shape_range(p)
    _json(p, "print the result as JSON")

    _cache_parser(command("cache", "list, verify, prune or clear the artifact cache"), common)
    return parser


def _cache_parser(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    actions = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> Any:
        return actions.add_parser(name, help=help, description=help, parents=common)

    _json(action("ls", "entries with strategy (auto -> the one chosen), backend, size, last use"))
    _json(action("verify", "check every entry's checksums; move bad ones aside (exit 1 if any)"))
    pr = action("prune", "delete least recently used entries down to a size")
    pr.add_argument("--max-size", required=True, type=byte_size, help="e.g. 2G, 500M")
    _json(pr)
    c = action("clear", "delete every entry and the quarantine")
    c.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _json(c)
