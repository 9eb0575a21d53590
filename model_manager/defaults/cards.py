"""Write a trained default's files: safetensors weights, measured numbers (JSON) and a model card."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..optim.hardware import cpu_model
from . import sketch as sketch_filter
from .evaluation import Score, mean_scores
from .spec import HELD_OUT, DefaultModel
from .training import TrainSettings
from .training_data import TRAINING_PHOTOS


def save_weights(module: nn.Module, path: Path) -> int:
    """Contiguous FP32 state dict as safetensors (no pickle); returns the file size in bytes."""
    state = {k: v.detach().float().contiguous() for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return path.stat().st_size


def metrics_record(
    spec: DefaultModel,
    module: nn.Module,
    scores: Sequence[Score],
    settings: TrainSettings,
    seconds: float,
    size: int,
) -> dict[str, Any]:
    """Everything the card states, as data (the tests read the per-image numbers from it)."""
    return {
        "model": spec.key,
        "architecture": spec.architecture,
        "hyperparameters": dict(spec.hyperparameters),
        "parameters": sum(p.numel() for p in module.parameters()),
        "weights_bytes": size,
        "baseline": spec.baseline,
        "held_out": [s.to_dict() for s in scores],
        "mean": mean_scores(scores),
        "training": {
            **settings.to_dict(),
            "seconds": round(seconds, 1),
            "photos": TRAINING_PHOTOS,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": f"{cpu_model()} ({platform.machine()})",
        },
    }


def write_metrics(spec: DefaultModel, record: dict[str, Any]) -> None:
    spec.metrics_path().parent.mkdir(parents=True, exist_ok=True)
    spec.metrics_path().write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_metrics(spec: DefaultModel) -> dict[str, Any]:
    """The numbers measured when the shipped weights were trained."""
    return dict(json.loads(spec.metrics_path().read_text()))


def _task_text(spec: DefaultModel) -> str:
    if spec.task == "super_resolution":
        return (
            f"x{spec.scale} super-resolution of photos downscaled by antialiased bicubic "
            f"(`defaults/degrade.py`); PSNR / SSIM on RGB 0..1 with a {spec.scale}-pixel border shaved."
        )
    if spec.task == "sketch":  # the filter's settings are part of what the model learnt
        names = [k for k in dir(sketch_filter) if k.isupper() and not k.startswith("_")]
        settings = ", ".join(f"{k.lower()}={getattr(sketch_filter, k)}" for k in names)
        return (
            "draw the pencil sketch of `defaults/sketch.py` (auto-levels, colour dodge of luma by "
            f"its blurred inverse, difference-of-Gaussians outlines, paper tint; {settings}). "
            "PSNR / SSIM against the filter's output."
        )
    return (
        "the middle frame of synthetic motion (`defaults/motion.py`): two frames of a photo under a "
        "shift / rotation / zoom, half with a foreground patch moving on its own; PSNR / SSIM "
        "against the true middle frame."
    )


def _clip_text(clip: float | None) -> str:
    return "no gradient clipping" if clip is None else f"gradient norm clipped at {clip}"


def _settings_text(train: dict[str, Any]) -> str:
    return (
        f"seed {train['seed']}, {train['steps']} steps of Adam (lr {train['lr']}, "
        f"{train['warmup']}-step warm-up, cosine decay, {_clip_text(train.get('clip'))}), "
        f"batch {train['batch']} of {train['patch']}x{train['patch']} patches, L1 loss, on "
        f"{train['threads']} CPU threads ({train['machine']}, torch {train['torch']}): "
        f"{train['seconds']:.0f} s"
        + (" of wall time, the cores shared with other training runs" if train.get("shared_cpu") else "")
    )


def write_card(spec: DefaultModel, record: dict[str, Any]) -> None:
    """A Markdown model card with the data, licences, settings and held-out numbers."""
    train = record["training"]
    rows = "\n".join(
        f"| {s['image']} | {s['model_psnr']:.2f} | {s['baseline_psnr']:.2f} | "
        f"{s['model_ssim']:.4f} | {s['baseline_ssim']:.4f} |"
        for s in record["held_out"]
    )
    mean = {k: f"**{v:.4f}**" if "ssim" in k else f"**{v:.2f}**" for k, v in record["mean"].items()}
    params = f"{record['parameters']:,} parameters"
    licences = "\n".join(f"- `skimage.data.{k}`: {v}" for k, v in TRAINING_PHOTOS.items())
    text = f"""# {spec.model_type}/{spec.name}

{spec.summary}.

- Architecture: `{spec.architecture}` {json.dumps(record["hyperparameters"])}, {params}
- Weights: `weights/{spec.key}.safetensors`, {record["weights_bytes"]:,} bytes, FP32
- Task: {_task_text(spec)}
- Baseline: {spec.baseline}

## Held-out quality (photos shipped in `model_manager/samples`, never trained on)

| photo | model PSNR (dB) | baseline PSNR (dB) | model SSIM | baseline SSIM |
|---|---|---|---|---|
{rows}
| **mean** | {mean["model_psnr"]} | {mean["baseline_psnr"]} | {mean["model_ssim"]} | {mean["baseline_ssim"]} |

## Training

`python scripts/train_defaults.py --only {spec.key} --threads {train["threads"]}` reproduces these
weights: {_settings_text(train)}.

Data: random crops (flips, 90-degree rotations, random channel gains and order) of these
scikit-image sample photos, whose licences scikit-image's docstrings state:

{licences}

Held out: {", ".join(HELD_OUT)} (see `model_manager/samples/LICENSE.md`).
"""
    spec.card_path().parent.mkdir(parents=True, exist_ok=True)
    spec.card_path().write_text(text)
