"""``model-manager list | samples | inspect``: the catalogue, sample photos, a checkpoint's architecture."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..config import ModelConfig


async def list_models(args: argparse.Namespace, config: ModelConfig) -> list[dict[str, Any]]:
    from ..manager import ModelManager

    async with ModelManager(config) as manager:
        return manager.list_models(args.model_type)


async def list_samples(args: argparse.Namespace, config: ModelConfig) -> list[dict[str, str]]:
    from ..samples import SAMPLE_NAMES, sample_path

    return [{"name": n, "path": str(sample_path(n))} for n in SAMPLE_NAMES]


async def inspect_checkpoint(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    from ..checkpoint import load_checkpoint

    loaded = await asyncio.to_thread(load_checkpoint, args.checkpoint)
    return {
        "path": str(args.checkpoint),
        "architecture": loaded.architecture,
        "parameters": sum(p.numel() for p in loaded.module.parameters()),
        "descriptor": loaded.descriptor.to_dict(),
    }
