"""What a model needs from its callers: input tensors, value range, scale, size rules, profile.

A descriptor travels with every model (as in spandrel): runners validate against it, exporters
take dynamic axes from it, the TensorRT builder takes its optimization profile from it. Nobody
guesses a value range or a size multiple.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import ModelInputError

Dim = int | str
"""A tensor dimension: a fixed size, or the name of a dynamic dimension ("batch", "height")."""

PadMode = Literal["reflect", "replicate", "constant"]

VIDEO_MAX_SIZE = (1080, 1920)
"""(H, W) a video model's default profile reaches: a 1080p landscape frame (style transfer and
interpolation; a portrait video asks for ``ShapeRange((1920, 1080))``; super-resolution tiles)."""


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: name, NCHW shape with named dynamic dims, dtype, value range."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    kind: Literal["image", "scalar"] = "image"

    @property
    def channels(self) -> int | None:
        """Channel count of an image tensor (dimension 1), None for a scalar input."""
        if self.kind != "image":
            return None
        c = self.shape[1]
        return c if isinstance(c, int) else None

    @property
    def dynamic_dims(self) -> dict[int, str]:
        """Index -> name of every dynamic dimension (what ONNX export calls dynamic axes)."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "value_range": list(self.value_range),
            "kind": self.kind,
        }


@dataclass(frozen=True)
class ShapeProfile:
    """Optimization-profile hint: min / opt / max concrete shapes per input name."""

    min: Mapping[str, tuple[int, ...]]
    opt: Mapping[str, tuple[int, ...]]
    max: Mapping[str, tuple[int, ...]]

    def to_dict(self) -> dict[str, Any]:
        return {k: {n: list(s) for n, s in getattr(self, k).items()} for k in ("min", "opt", "max")}


@dataclass(frozen=True)
class ModelDescriptor:
    """Everything a caller needs to feed a model and read its output."""

    model_type: str
    architecture: str
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec
    scale: int = 1
    size_min: int = 1
    size_multiple: int = 1
    pad_mode: PadMode = "reflect"
    profile: ShapeProfile | None = None
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        for name in ("scale", "size_min", "size_multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ModelInputError(f"descriptor {name} must be an integer >= 1, got {value!r}")

    @property
    def image_inputs(self) -> tuple[TensorSpec, ...]:
        """The inputs that are images (padded and cropped together by the image-level call)."""
        return tuple(s for s in self.inputs if s.kind == "image")

    def fit_size(self, height: int, width: int) -> tuple[int, int]:
        """The nearest size the raw model accepts: at least ``size_min``, a multiple of ``size_multiple``."""
        m = max(self.size_multiple, 1)
        return round_up(max(height, self.size_min), m), round_up(max(width, self.size_min), m)

    def opt_shape(self) -> tuple[int, int, int]:
        """(batch, height, width) of the profile's opt shape: the size to export, calibrate and time at."""
        opt = self.profile.opt if self.profile else {}
        first = next((opt[s.name] for s in self.image_inputs if s.name in opt), (1, 3, 256, 256))
        return int(first[0]), int(first[2]), int(first[3])

    def with_shape_range(self, shape_range: ShapeRange) -> ModelDescriptor:
        """This descriptor with its profile replaced by ``shape_range`` (sizes rounded up to the
        size multiple); a range below the model's minimum is a ModelInputError naming both."""
        if self.profile is None:
            raise ModelInputError(
                f"{self.architecture}: expected a descriptor with a shape profile, got none"
            )
        if min(shape_range.max_size) < self.size_min:
            raise ModelInputError(
                f"{self.architecture}: max_size {shape_range.max_size} is below the model's minimum "
                f"side {self.size_min}"
            )
        max_h, max_w = self.fit_size(*shape_range.max_size)
        opt_h, opt_w = self.fit_size(*(shape_range.opt_size or self.opt_shape()[1:]))
        images = {s.name for s in self.image_inputs}

        def level(shapes: Mapping[str, tuple[int, ...]], batch: int, h: int, w: int) -> dict:
            """Every input at ``batch``; image inputs at h x w, the others keep their own sizes."""
            return {n: (batch, s[1], h, w) if n in images else (batch, *s[1:]) for n, s in shapes.items()}

        p = self.profile
        profile = ShapeProfile(
            min=dict(p.min),
            opt=level(p.opt, self.opt_shape()[0], min(opt_h, max_h), min(opt_w, max_w)),
            max=level(p.max, shape_range.max_batch, max_h, max_w),
        )
        return replace(self, profile=profile)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output H, W for an input of H, W once the image-level call has padded and cropped."""
        return height * self.scale, width * self.scale

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "architecture": self.architecture,
            "inputs": [s.to_dict() for s in self.inputs],
            "output": self.output.to_dict(),
            "scale": self.scale,
            "size_min": self.size_min,
            "size_multiple": self.size_multiple,
            "pad_mode": self.pad_mode,
            "profile": self.profile.to_dict() if self.profile else None,
            "precisions": list(self.precisions),
            "hyperparameters": dict(self.hyperparameters),
            "notes": self.notes,
        }


def image_profile(
    names: tuple[str, ...],
    channels: int,
    *,
    size_min: int,
    multiple: int,
    opt: int = 256,
    max_size: int | tuple[int, int] = 1024,
    max_batch: int = 4,
    extra: Mapping[str, tuple[int, ...]] | None = None,
) -> ShapeProfile:
    """Profile hint for models whose inputs are same-sized NCHW images (plus fixed-shape extras).

    Sizes (one side, or (H, W)) are rounded up to ``multiple``; ``extra`` holds non-image inputs
    whose shape is (batch, ...) with the batch dimension first; it follows the images' batch.
    """

    def shapes(batch: int, size: int | tuple[int, int]) -> dict[str, tuple[int, ...]]:
        h, w = (size, size) if isinstance(size, int) else size
        out: dict[str, tuple[int, ...]] = {
            n: (batch, channels, round_up(h, multiple), round_up(w, multiple)) for n in names
        }
        for n, s in (extra or {}).items():
            out[n] = (batch, *s[1:])
        return out

    return ShapeProfile(
        min=shapes(1, max(size_min, multiple)),
        opt=shapes(1, opt),
        max=shapes(max_batch, max_size),
    )


@dataclass(frozen=True)
class ShapeRange:
    """The inputs an optimized artifact must accept, chosen per load: up to ``max_size`` (H, W)
    and ``max_batch`` frames, tuned for ``opt_size`` (None: the model's own opt size).

    It replaces the descriptor's profile (:meth:`ModelDescriptor.with_shape_range`), so it is part
    of the cache key; engines with fixed ranges (TensorRT) accept exactly this range.
    """

    max_size: tuple[int, int]
    max_batch: int = 4
    opt_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("max_size", "opt_size"):
            value = getattr(self, name)
            if value is None and name == "opt_size":
                continue
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = (int(value), int(value))
                object.__setattr__(self, name, value)
            if not (isinstance(value, tuple) and len(value) == 2 and all(_positive(v) for v in value)):
                raise ModelInputError(f"{name} must be (height, width) of integers >= 1, got {value!r}")
        if not _positive(self.max_batch):
            raise ModelInputError(f"max_batch must be an integer >= 1, got {self.max_batch!r}")
        if self.opt_size is not None and any(o > m for o, m in zip(self.opt_size, self.max_size)):
            raise ModelInputError(f"opt_size {self.opt_size} must not exceed max_size {self.max_size}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_size": list(self.max_size), "max_batch": self.max_batch, "opt_size": self.opt_size}


def _positive(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def descriptor_from_dict(data: Mapping[str, Any]) -> ModelDescriptor:
    """Rebuild a descriptor from :meth:`ModelDescriptor.to_dict` output (JSON, never a pickle)."""

    def spec(d: Mapping[str, Any]) -> TensorSpec:
        return TensorSpec(d["name"], tuple(d["shape"]), d["dtype"], tuple(d["value_range"]), d["kind"])

    prof = data.get("profile")
    profile = (
        ShapeProfile(**{k: {n: tuple(s) for n, s in prof[k].items()} for k in ("min", "opt", "max")})
        if prof
        else None
    )
    return ModelDescriptor(
        model_type=data["model_type"],
        architecture=data["architecture"],
        inputs=tuple(spec(s) for s in data["inputs"]),
        output=spec(data["output"]),
        scale=data["scale"],
        size_min=data["size_min"],
        size_multiple=data["size_multiple"],
        pad_mode=data["pad_mode"],
        profile=profile,
        precisions=tuple(data["precisions"]),
        hyperparameters=dict(data["hyperparameters"]),
        notes=data.get("notes", ""),
    )
