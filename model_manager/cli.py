"""The ``model-manager`` command line: list models, inspect checkpoints, run a model on images.

Exit codes: 0 success, 1 a model_manager error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .cache_commands import add_cache_parser, format_cache, run_cache_command
from .config import ModelConfig
from .errors import ModelManagerError
from .optimization import Optimization

log = logging.getLogger("model_manager.cli")


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (or one number for a square) -> (H, W); an argparse usage error otherwise (exit 2)."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers (e.g. 256x256), got {text!r}")
    return int(parts[0]), int(parts[-1])


def _model_arguments(p: argparse.ArgumentParser, optimization_help: str) -> None:
    """TYPE NAME [--optimization auto]: the model a command works on."""
    p.add_argument("model_type")
    p.add_argument("name", help="model name, or 'default'")
    p.add_argument("--optimization", default="auto", help=optimization_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-manager", description="Fast, verified inference for image and video models."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="build auto for a default model, measure it against FP32, process a clip")
    p.add_argument("--type", dest="model_type", default="super_resolution", help="model type (default SR)")
    p.add_argument("--name", default="default", help="model name (default: the type's default)")
    p.add_argument("--optimization", default="auto", help="strategy (default auto)")
    p.add_argument(
        "--out", type=Path, default=Path("model_manager_demo"), help="folder for the clip and result"
    )
    p.add_argument("--frames", type=int, default=24, help="clip length in frames (default 24)")
    p.add_argument("--size", type=int, default=128, help="clip frame size in pixels (default 128)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("optimize", help="build (or load from the cache) a model's optimized artifact")
    _model_arguments(p, "strategy (default auto)")
    p.add_argument("--checkpoint", type=Path, help="register this checkpoint under NAME first")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")

    p = sub.add_parser("bench", help="every strategy on this machine against eager FP32 (nothing cached)")
    _model_arguments(p, "auto (every candidate) or one strategy")
    p.add_argument("--size", type=parse_size, help="input HxW (default: the model's opt shape, 256x256)")
    p.add_argument("--plot", type=Path, help="also write a bar chart (PNG) here; needs matplotlib")
    p.add_argument("--compare", type=Path, help="also write input | FP32 | served | difference x10 (PNG)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("list", help="registered models with their descriptors")
    p.add_argument("--type", dest="model_type", help="only this model type")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("samples", help="the real sample images shipped with the package")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")

    p = sub.add_parser("inspect", help="detect a checkpoint's architecture and hyperparameters")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("run", help="run a model on an image, a folder of images or a video")
    p.add_argument("model_type")
    p.add_argument("name", help="model name, or 'default'")
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
    p.add_argument("--checkpoint", type=Path, help="register this checkpoint under NAME first")
    p.add_argument(
        "--optimization",
        default="auto",
        help=f"strategy: {', '.join(o.value for o in Optimization)} (default auto)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    add_cache_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = (
        logging.ERROR if args.quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(asyncio.run(_dispatch(args)) or 0)
    except ModelManagerError as exc:
        print(f"model-manager: error: {exc}", file=sys.stderr)
        return 1


async def _dispatch(args: argparse.Namespace) -> int:
    from .bench_command import bench
    from .commands import demo, inspect_checkpoint, list_models, list_samples, optimize, run_image

    config = ModelConfig.from_env()
    if args.command == "cache":
        result, code = await run_cache_command(args, config)
        print(
            json.dumps(result, indent=2, default=str)
            if args.json
            else format_cache(args.cache_command, result)
        )
        return code

    handlers: dict[str, Any] = {
        "list": list_models,
        "samples": list_samples,
        "inspect": inspect_checkpoint,
        "run": run_image,
        "demo": demo,
        "bench": bench,
        "optimize": optimize,
    }
    started = time.perf_counter()
    result = await handlers[args.command](args, config)
    log.info("%s finished in %.2f s", args.command, time.perf_counter() - started)
    if result is not None:
        print(json.dumps(result, indent=2, default=str) if args.json else _text(args.command, result))
    return 0


def _text(command: str, result: Any) -> str:
    from .commands import format_text

    return format_text(command, result)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
