"""The interpolation task: synthetic motion made from still photos, and the linear-blend baseline.

A frame at time s in [0, 1] is the photo seen through a similarity transform (shift, rotation,
zoom) scaled by (s - 1/2): the two inputs are the ends of the motion, the target at t = 1/2 is the
untouched photo. With an optional foreground patch moving on its own path, the model also sees
occlusion. Frames are sampled from a larger canvas and cropped, so no border enters the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Motion:
    """Camera motion between the two input frames: pixels, degrees, and a zoom factor."""

    shift_x: float = 0.0
    shift_y: float = 0.0
    angle_deg: float = 0.0
    zoom: float = 1.0

    @staticmethod
    def random(generator: torch.Generator, max_shift: float, max_angle: float, max_zoom: float) -> Motion:
        """A motion drawn uniformly within the bounds (zoom log-uniform in [1/max_zoom, max_zoom])."""
        u = torch.rand(4, generator=generator).tolist()
        return Motion(
            shift_x=(2 * u[0] - 1) * max_shift,
            shift_y=(2 * u[1] - 1) * max_shift,
            angle_deg=(2 * u[2] - 1) * max_angle,
            zoom=math.exp((2 * u[3] - 1) * math.log(max_zoom)),
        )


def _theta(motion: Motion, s: float, height: int, width: int) -> torch.Tensor:
    """affine_grid matrix (output -> input, normalised coordinates) of ``motion`` scaled by s."""
    angle = math.radians(motion.angle_deg * s)
    zoom = motion.zoom**s
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    # Pixel shifts in normalised units (align_corners=False: 2 / size per pixel); the aspect
    # ratio enters the rotation so that it rotates pixels, not the normalised square.
    aspect = width / height
    tx, ty = 2 * motion.shift_x * s / width, 2 * motion.shift_y * s / height
    return torch.tensor([[cos, -sin / aspect, tx], [sin * aspect, cos, ty]], dtype=torch.float32)


def view(canvas: torch.Tensor, motion: Motion, s: float, size: tuple[int, int]) -> torch.Tensor:
    """The (1,C,h,w) centre view of a (1,C,H,W) canvas under ``motion`` at s (bilinear, border)."""
    _, c, big_h, big_w = canvas.shape
    theta = _theta(motion, s, big_h, big_w).unsqueeze(0)
    grid = F.affine_grid(theta, [1, c, big_h, big_w], align_corners=False)
    moved = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="border", align_corners=False)
    h, w = size
    top, left = (big_h - h) // 2, (big_w - w) // 2
    return moved[..., top : top + h, left : left + w]


def triplet(
    canvas: torch.Tensor,
    motion: Motion,
    size: tuple[int, int],
    timestep: float = 0.5,
    foreground: tuple[torch.Tensor, Motion] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frame 0, frame at ``timestep``, frame 1) of the canvas moving by ``motion``.

    ``foreground`` is an (1,C,ph,pw) patch and its own motion, pasted at the centre of each frame
    after the camera motion (so it occludes and reveals background).
    """
    frames = []
    for s in (-0.5, timestep - 0.5, 0.5):
        frame = view(canvas, motion, s, size)
        if foreground is not None:
            frame = _paste(frame, *foreground, s)
        frames.append(frame)
    return frames[0], frames[1], frames[2]


def _paste(frame: torch.Tensor, patch: torch.Tensor, motion: Motion, s: float) -> torch.Tensor:
    """``frame`` with ``patch`` moved by ``motion`` at s, pasted at the centre with a soft edge."""
    _, _, h, w = frame.shape
    ph, pw = patch.shape[-2:]
    layer = torch.zeros_like(frame)
    alpha = torch.zeros((1, 1, h, w))
    top, left = (h - ph) // 2, (w - pw) // 2
    layer[..., top : top + ph, left : left + pw] = patch
    alpha[..., top : top + ph, left : left + pw] = 1.0
    both = view(torch.cat((layer, alpha), 1), motion, s, (h, w))
    moved, mask = both[:, :-1], both[:, -1:]
    return frame * (1 - mask) + moved * mask


def linear_blend(frame0: torch.Tensor, frame1: torch.Tensor, timestep: float = 0.5) -> torch.Tensor:
    """The baseline every interpolation model must beat: (1 - t) * frame0 + t * frame1."""
    return (1 - timestep) * frame0 + timestep * frame1
