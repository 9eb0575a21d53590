"""``model-manager optimize``: build (first time) or load (cache hit) a model's artifact; and the
runner loading every model command shares (``--checkpoint`` registered first)."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import ModelConfig
from ..descriptor import ShapeRange
from ..manager import ModelManager
from ..runners import Runner


async def load_runner(manager: ModelManager, args: argparse.Namespace) -> Runner:
    """The command's runner: ``--checkpoint`` registered under NAME first, then the optimization loaded.

    A build started here publishes its steps on :mod:`model_manager.progress` (the CLI shows them).
    """
    if args.checkpoint is not None:
        await manager.register_checkpoint(args.model_type, args.name, args.checkpoint)
    shape_range = ShapeRange(args.max_size, args.max_batch) if args.max_size else None
    return await manager.load_optimized_model(
        args.model_type, args.name, args.optimization, shape_range=shape_range
    )


async def optimize(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """What was chosen, why, and where it lives."""
    async with ModelManager(config) as manager:
        runner = await load_runner(manager, args)
        return runner.info.to_dict()
