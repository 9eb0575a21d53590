"""``model-manager bench``: every strategy on this machine against eager FP32, as a table, JSON or a plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..errors import BackendUnavailableError
from ..images import from_batch, write_image
from ..manager import ModelManager
from ..runners.base import Runner
from ..samples import sample_batch


async def bench(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    async with ModelManager(config) as manager:
        if args.checkpoint is not None:
            await manager.register_checkpoint(args.model_type, args.name, args.checkpoint)
        result = await manager.benchmark_strategies(args.model_type, args.name, args.optimization, args.size)
        if args.compare is not None:
            eager = await manager.load_optimized_model(args.model_type, args.name, "none")
            served = await manager.load_optimized_model(
                args.model_type, args.name, result["decision"]["chosen"]
            )
            result["compare"] = str(compare_grid(eager, served, args.size or (256, 256), args.compare))
    if args.plot is not None:
        result["plot"] = str(plot(result, args.plot))
    return result


def compare_grid(eager: Runner, served: Runner, size: tuple[int, int], path: Path) -> Path:
    """Input | FP32 output | optimized output | |difference| x 10, on a real sample photo."""
    inputs = sample_batch(eager.descriptor, size)
    out_range = eager.descriptor.output.value_range
    reference, candidate = eager(*inputs), served(*inputs)
    lo, hi = out_range
    diff = np.clip(np.abs(candidate - reference) * 10.0 + lo, lo, hi)
    pictures = [from_batch(inputs[0], eager.input_spec[0].value_range)[0]]
    pictures += [from_batch(x, out_range)[0] for x in (reference, candidate, diff)]
    height = max(p.shape[0] for p in pictures)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255) for p in pictures]
    return write_image(path, np.concatenate(padded, axis=1))


def plot(result: dict[str, Any], path: Path) -> Path:
    """A bar chart of median latency per strategy (matplotlib, from the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendUnavailableError("--plot needs matplotlib: pip install 'model_manager[plot]'") from exc
    cands = [c for c in result["decision"]["candidates"] if c["median_ms"] is not None]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    colours = ["tab:green" if c["passed"] else "tab:gray" for c in cands]
    ax.barh([c["name"] for c in cands], [c["median_ms"] for c in cands], color=colours)
    ax.set_xlabel("median latency, ms (grey: failed its quality gate)")
    ax.set_title(f"{result['model']}: {result['decision']['chosen']} served")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
