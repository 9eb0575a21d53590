"""Shared fixtures: real sample images as model inputs, small architecture configs, isolated config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ModelConfig
from model_manager.models import all_architectures
from model_manager.samples import sample_batch

# Small but structurally complete configurations of every architecture (fast on 2 cores).
SMALL_CONFIGS: dict[str, dict] = {
    "TransformerNet": {"channels": 3, "width": 8, "num_res": 2},
    "SRVGGNetCompact": {
        "num_in_ch": 3,
        "num_out_ch": 3,
        "num_feat": 8,
        "num_conv": 4,
        "upscale": 4,
        "act_type": "prelu",
    },
    "RRDBNet": {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
    "ESPCN": {"channels": 3, "upscale": 2, "feat1": 8, "feat2": 8, "feat3": 4},
}


def small_config(arch_id: str) -> dict:
    """A small configuration for ``arch_id`` (IFNet layouts use narrow blocks)."""
    if arch_id in SMALL_CONFIGS:
        return dict(SMALL_CONFIGS[arch_id])
    hp = all_architectures()[arch_id].default_hyperparameters()
    if "widths" in hp:
        hp["widths"] = tuple(w // hp["widths"][-1] * 4 for w in hp["widths"])  # k = 4
    return hp


def sample_inputs(descriptor, size: tuple[int, int] = (64, 64), batch: int = 1) -> list[np.ndarray]:
    """Inputs for a descriptor cut from the real sample photos (shifted frames for two-frame models)."""
    return sample_batch(descriptor, size, batch)


@pytest.fixture
def config(tmp_path: Path) -> ModelConfig:
    """A config whose cache lives in the test's temporary folder."""
    return ModelConfig(cache_dir=tmp_path / "cache", device="cpu")


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
