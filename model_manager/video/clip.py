"""A short real clip for demos and tests: a pan and zoom over a shipped photo, with a tone as audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..defaults.evaluation import photo
from ..defaults.motion import Motion, view
from ..images import from_batch
from .io import _av

PAN_MARGIN = 1.25
"""A canvas smaller than this many times the frame is enlarged first (the pan needs room)."""


def pan_zoom_frames(name: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``count`` HxWx3 uint8 views of sample photo ``name`` under a slow pan (and zoom).

    Frames larger than the photo (720p from a 512x512 photo) come from the photo enlarged
    (bilinear) to ``PAN_MARGIN`` times the frame, so every frame has exactly ``size``.
    """
    canvas = photo(name)
    grow = PAN_MARGIN * max(size[0] / canvas.shape[-2], size[1] / canvas.shape[-1])
    if grow > 1:
        canvas = F.interpolate(canvas, scale_factor=grow, mode="bilinear", align_corners=False).clamp(0, 1)
    motion = Motion(shift_x=0.4 * canvas.shape[-1] - size[1] * 0.4, shift_y=0.0, angle_deg=0.0, zoom=1.15)
    steps = torch.linspace(-0.5, 0.5, count).tolist()
    return [from_batch(view(canvas, motion, s, size).numpy())[0] for s in steps]


def write_clip(
    path: str | Path,
    name: str = "astronaut",
    count: int = 24,
    size: tuple[int, int] = (128, 128),
    fps: int = 12,
) -> Path:
    """Write the pan-and-zoom clip as H.264 (or MPEG-4) with a 440 Hz AAC tone of the same length."""
    av = _av()
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        video = container.add_stream(codec, rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = size[1], size[0], "yuv420p"
        audio = container.add_stream("aac", rate=22050)
        for frame in pan_zoom_frames(name, count, size):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode())
        _write_tone(av, container, audio, seconds=count / fps)
    return path


def _write_tone(av: Any, container: Any, stream: Any, seconds: float, rate: int = 22050) -> None:
    """A quiet 440 Hz sine, encoded in 1024-sample AAC frames."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(samples), 1024):
        chunk = samples[start : start + 1024][None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
