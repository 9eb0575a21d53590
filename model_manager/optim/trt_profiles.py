"""TensorRT optimization profiles: min / opt / max shapes per input, from a descriptor or given.

Pure functions (no TensorRT needed), so they are tested on any machine. A profile is valid when
every input has three shapes of the same rank, each dimension positive and min <= opt <= max;
an ``opt`` outside ``min..max`` is clamped into it (with the reason returned), never passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..descriptor import ModelDescriptor
from ..errors import InvalidInputError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class InputProfile:
    """The shapes one engine input accepts: ``min <= opt <= max`` per dimension."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        ranks = {len(self.min), len(self.opt), len(self.max)}
        if len(ranks) != 1:
            raise InvalidInputError(
                f"profile {self.name!r}: expected min / opt / max of one rank, "
                f"got {self.min}, {self.opt}, {self.max}"
            )
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if lo < 1 or not lo <= mid <= hi:
                raise InvalidInputError(
                    f"profile {self.name!r}: expected 1 <= min <= opt <= max in every dimension, "
                    f"got min {self.min}, opt {self.opt}, max {self.max}"
                )

    def accepts(self, shape: Shape) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max)
        )

    def describe(self) -> str:
        return f"{self.name}: min {self.min}, opt {self.opt}, max {self.max}"

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def clamp_opt(name: str, lo: Shape, opt: Shape, hi: Shape) -> tuple[InputProfile, str | None]:
    """A profile whose opt is moved into ``lo..hi``; the note says what moved (None if nothing)."""
    fixed = tuple(min(max(o, a), b) for a, o, b in zip(lo, opt, hi))
    note = None if fixed == tuple(opt) else f"{name}: opt {tuple(opt)} outside min..max, clamped to {fixed}"
    return InputProfile(name, tuple(lo), fixed, tuple(hi)), note


def opt_at_size(descriptor: ModelDescriptor, size: tuple[int, int]) -> dict[str, Shape]:
    """The descriptor's opt shapes with every image input's H / W set to ``size``."""
    if descriptor.profile is None:
        return {}
    opt = descriptor.profile.opt
    return {
        s.name: (*opt[s.name][:-2], *size) if s.kind == "image" else tuple(opt[s.name])
        for s in descriptor.inputs
    }


def profiles_from_descriptor(
    descriptor: ModelDescriptor, opt: Mapping[str, Shape] | None = None
) -> tuple[list[InputProfile], list[str]]:
    """One profile per input from the descriptor's profile hint (``opt`` overrides); notes on clamping."""
    hint = descriptor.profile
    if hint is None:
        raise InvalidInputError(
            f"{descriptor.architecture}: expected a descriptor with a shape profile, got none; "
            "pass input_shapes explicitly"
        )
    profiles, notes = [], []
    for spec in descriptor.inputs:
        wanted = tuple((opt or {}).get(spec.name, hint.opt[spec.name]))
        profile, note = clamp_opt(spec.name, tuple(hint.min[spec.name]), wanted, tuple(hint.max[spec.name]))
        profiles.append(profile)
        if note:
            notes.append(note)
    return profiles, notes


def profiles_from_shapes(
    input_shapes: Mapping[str, tuple[Shape, Shape, Shape] | Shape],
) -> list[InputProfile]:
    """The seed's ``input_shapes``: ``{name: (min, opt, max)}``, or ``{name: shape}`` for a fixed shape."""
    profiles = []
    for name, shapes in input_shapes.items():
        if shapes and all(isinstance(d, int) for d in shapes):
            fixed = tuple(int(d) for d in shapes)  # type: ignore[arg-type]
            profiles.append(InputProfile(name, fixed, fixed, fixed))
            continue
        if len(shapes) != 3:
            raise InvalidInputError(
                f"input_shapes[{name!r}]: expected (min, opt, max) or one shape, got {shapes}"
            )
        lo, mid, hi = (tuple(int(d) for d in s) for s in shapes)  # type: ignore[union-attr]
        profiles.append(InputProfile(name, lo, mid, hi))
    if not profiles:
        raise InvalidInputError("input_shapes: expected at least one input, got none")
    return profiles
