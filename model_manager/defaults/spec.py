"""What each embedded default model is: architecture, size, task, baseline, and where its files live.

The weights are trained here (``scripts/train_defaults.py``) from photos that scikit-image ships
and are stored as safetensors beside a model card and the measured held-out numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

Task = Literal["super_resolution", "sketch", "motion"]

#: Photos the package ships (``model_manager.samples``) and training never sees: the held-out set.
HELD_OUT = ("astronaut", "coffee", "chelsea", "rocket")


@dataclass(frozen=True)
class DefaultModel:
    """One trained default: registry identity, architecture configuration and what it was taught."""

    model_type: str
    name: str
    architecture: str
    hyperparameters: Mapping[str, Any]
    task: Task
    baseline: str
    summary: str
    default: bool = False
    scale: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """File stem of this model's weights, card and metrics: ``type__name``."""
        return f"{self.model_type}__{self.name}"

    def weights_path(self) -> Path:
        return _package_file("weights", f"{self.key}.safetensors")

    def card_path(self) -> Path:
        return _package_file("cards", f"{self.key}.md")

    def metrics_path(self) -> Path:
        return _package_file("cards", f"{self.key}.json")


def _package_file(folder: str, name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(folder).joinpath(name)))


DEFAULT_MODELS: tuple[DefaultModel, ...] = (
    DefaultModel(
        "super_resolution",
        "espcn-x2",
        "ESPCN",
        {"channels": 3, "upscale": 2, "feat1": 64, "feat2": 64, "feat3": 32},
        task="super_resolution",
        baseline="bicubic upscaling",
        summary="ESPCN x2 RGB (PyTorch examples layout), trained here on photos",
        default=True,
        scale=2,
    ),
    DefaultModel(
        "super_resolution",
        "compact-x4",
        "SRVGGNetCompact",
        {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 48, "num_conv": 8, "upscale": 4, "act_type": "prelu"},
        task="super_resolution",
        baseline="bicubic upscaling",
        summary="Real-ESRGAN compact layout, 48 features x 8 convs, x4, trained here on photos",
        scale=4,
    ),
    DefaultModel(
        "style_transfer",
        "sketch",
        "TransformerNet",
        {"channels": 3, "width": 32, "num_res": 5},
        task="sketch",
        baseline="the unstyled input",
        summary="Johnson TransformerNet (fast_neural_style layout) trained to draw the pencil-sketch filter",
        default=True,
    ),
    DefaultModel(
        "interpolation",
        "ifnet-s",
        "IFNet",
        {"widths": (72, 48, 36, 24, 12), "encoder_channels": 4, "heavy": False},
        task="motion",
        baseline="linear blending of the two frames",
        summary="RIFE 4.25 IFNet layout at 3/8 width, trained here on synthetic motion of photos",
        default=True,
    ),
)


def default_model(model_type: str, name: str) -> DefaultModel:
    """The spec of default ``model_type/name`` (KeyError naming the known ones otherwise)."""
    for spec in DEFAULT_MODELS:
        if (spec.model_type, spec.name) == (model_type, name):
            return spec
    raise KeyError(f"no embedded default {model_type}/{name}; known: {[s.key for s in DEFAULT_MODELS]}")
