"""The ``model-manager`` entry point: parse, set up logging and the build display, run the command.

Exit codes: 0 success, 1 a model_manager error (one line on stderr), 2 bad usage (argparse's, or
an output path nothing can write), 130 interrupted.

A command's module (and torch, ONNX, the backends with it) is imported only when that command
runs, so ``model-manager --help`` and ``model-manager run --help`` start at once.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence

from ..errors import ModelManagerError, WeightsUnavailableError
from .display import showing_builds
from .outcome import Outcome, UsageError
from .parser import PROG, build_parser
from .text import format_result

log = logging.getLogger("model_manager.cli")

COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("models", "list_models"),
    "samples": ("models", "list_samples"),
    "inspect": ("models", "inspect_checkpoint"),
    "run": ("run", "run"),
    "optimize": ("optimize", "optimize"),
    "bench": ("bench", "bench"),
    "demo": ("demo", "demo"),
    "cache": ("cache", "cache"),
}
"""command -> (module of this package, async handler(args, config) returning data or an Outcome)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (argparse exits 2 on bad usage)."""
    args = build_parser().parse_args(argv)
    import asyncio  # after parsing: --help does without it

    verbose: int = args.verbose or 0
    quiet: bool = args.quiet
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # -v logs every build event (model_manager.build, INFO) in place of the display
    try:
        with showing_builds(sys.stderr, enabled=not quiet and verbose == 0):
            outcome = asyncio.run(_dispatch(args))
    except UsageError as exc:
        return _fail(str(exc), 2)
    except ModelManagerError as exc:
        log.debug("%s failed", args.command, exc_info=True)
        return _fail(describe_error(exc), 1)
    except OSError as exc:  # a file that cannot be written or read: no traceback (-vv logs it)
        log.debug("%s failed", args.command, exc_info=True)
        return _fail(describe_error(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    if outcome.data is not None:
        command = args.command if args.command != "cache" else f"cache {args.cache_command}"
        print(
            json.dumps(outcome.data, indent=2, default=str)
            if args.json
            else format_result(command, outcome.data)
        )
    return outcome.code


async def _dispatch(args: argparse.Namespace) -> Outcome:
    from ..config import ModelConfig

    module, function = COMMANDS[args.command]
    handler = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    started = time.perf_counter()
    result = await handler(args, ModelConfig.from_env())
    log.info("%s finished in %.2f s", args.command, time.perf_counter() - started)
    return result if isinstance(result, Outcome) else Outcome(result)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def describe_error(exc: BaseException) -> str:
    """The error as one line, in the command line's terms (``--checkpoint FILE``, not an API call)."""
    if isinstance(exc, WeightsUnavailableError) and exc.model:
        needs = f" with {exc.needs}" if exc.needs else ""
        return f"{exc.model} has no weights on this machine; pass --checkpoint FILE{needs}"
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
