"""The built-in catalogue: published checkpoints people already have, and the embedded defaults.

Published models are listed with the configuration their files have; their weights are not
shipped (no network here), so they load once the user registers the file they already have.
The embedded defaults are small models trained here (``defaults/``), shipped with model cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .defaults import DEFAULT_MODELS
from .entry import ModelEntry, WeightsSource
from .models import all_architectures


def _entry(
    model_type: str,
    name: str,
    arch_id: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    weights: WeightsSource,
    description: str,
    default: bool = False,
) -> ModelEntry:
    arch = all_architectures()[arch_id]
    hp = {**arch.default_hyperparameters(), **(overrides or {})}
    return ModelEntry(
        model_type=model_type,
        name=name,
        architecture=arch_id,
        descriptor=arch.descriptor(hp),
        weights=weights,
        hyperparameters=hp,
        default=default,
        description=description,
    )


def _published(
    model_type: str,
    name: str,
    arch_id: str,
    file: str,
    source: str,
    overrides: Mapping[str, Any] | None = None,
) -> ModelEntry:
    return _entry(
        model_type,
        name,
        arch_id,
        overrides,
        weights=WeightsSource("required", hint=f"the file {file} ({source})"),
        description=f"published {source} checkpoint {file}",
    )


def builtin_entries() -> list[ModelEntry]:
    """Every built-in entry, published checkpoints first, then the embedded defaults."""
    examples = "PyTorch examples fast_neural_style"
    entries = [
        _published("style_transfer", style, "TransformerNet", f"{style}.pth", examples)
        for style in ("candy", "mosaic", "udnie", "rain_princess")
    ]
    entries += [
        _published(
            "super_resolution",
            "realesr-animevideov3",
            "SRVGGNetCompact",
            "realesr-animevideov3.pth",
            "Real-ESRGAN",
            {"num_conv": 16},
        ),
        _published(
            "super_resolution",
            "realesr-general-x4v3",
            "SRVGGNetCompact",
            "realesr-general-x4v3.pth",
            "Real-ESRGAN",
        ),
        _published(
            "super_resolution", "RealESRGAN_x4plus", "RRDBNet", "RealESRGAN_x4plus.pth", "Real-ESRGAN"
        ),
        _published(
            "super_resolution",
            "RealESRGAN_x2plus",
            "RRDBNet",
            "RealESRGAN_x2plus.pth",
            "Real-ESRGAN",
            {"scale": 2},
        ),
    ]
    entries += [
        _published("interpolation", f"rife-{v}", "IFNet", "train_log/flownet.pkl", f"Practical-RIFE {v}")
        for v in ("4.25", "4.26")
    ]
    entries += [
        # 4.25.heavy keeps the 4-channel encoder with blocks twice as wide; 4.26.heavy has the
        # 16-channel encoder (read from the shapes, as vs-rife's per-version files show).
        _published(
            "interpolation",
            "rife-4.25-heavy",
            "IFNet",
            "train_log/flownet.pkl",
            "Practical-RIFE 4.25.heavy",
            {"widths": (384, 256, 192, 128, 64)},
        ),
        _published(
            "interpolation",
            "rife-4.26-heavy",
            "IFNet-heavy",
            "train_log/flownet.pkl",
            "Practical-RIFE 4.26.heavy",
        ),
    ]
    return entries + default_entries()


def default_entries() -> list[ModelEntry]:
    """The embedded defaults: small models trained here, weights shipped in the package."""
    return [
        _entry(
            spec.model_type,
            spec.name,
            spec.architecture,
            spec.hyperparameters,
            weights=WeightsSource("package", path=spec.weights_path()),
            default=spec.default,
            description=f"{spec.summary}; model card: defaults/cards/{spec.key}.md",
        )
        for spec in DEFAULT_MODELS
    ]
