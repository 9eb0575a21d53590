"""Frames of a video or an image folder as a Ray Dataset of ordered rows, and the rows back to files.

A row is one source frame: ``index`` (its place in the source), ``frame`` (HxWx3 uint8) or, for an
image folder, ``path`` (the actor decodes it), and for interpolation the frame that follows it
(``next`` / ``next_path``; ``has_next`` is False on the last one). Carrying the next frame in the
row makes every row self-contained, so the pair that straddles two batches is interpolated as it
is inside one. Outputs carry ``index`` = source index x factor + step, the order they are written in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..images import folder_images, write_image


@dataclass(frozen=True)
class FrameSource:
    """What was read: the rows' count, and for a video its rate and whether it carries audio."""

    path: Path
    kind: str  # "folder" or "video"
    frames: int
    fps: Fraction | None = None
    has_audio: bool = False


def folder_rows(files: list[Path], pairs: bool) -> list[dict[str, Any]]:
    """One row per image path (actors decode them), with the next path for interpolation."""
    rows: list[dict[str, Any]] = []
    for i, f in enumerate(files):
        row: dict[str, Any] = {"index": i, "path": str(f)}
        if pairs:
            row["has_next"] = i + 1 < len(files)
            row["next_path"] = str(files[min(i + 1, len(files) - 1)])
        rows.append(row)
    return rows


def frame_rows(frames: Iterator[np.ndarray], pairs: bool) -> list[dict[str, Any]]:
    """One row per decoded frame, with the next frame for interpolation (the last repeats itself)."""
    decoded = list(frames)
    if not decoded:
        raise InvalidInputError("expected at least one frame, the source has none")
    rows: list[dict[str, Any]] = []
    for i, frame in enumerate(decoded):
        row: dict[str, Any] = {"index": i, "frame": frame}
        if pairs:
            row["has_next"] = i + 1 < len(decoded)
            row["next"] = decoded[min(i + 1, len(decoded) - 1)]
        rows.append(row)
    return rows


def read_source(path: Path, pairs: bool) -> tuple[Any, FrameSource]:
    """A Dataset of the source's rows (a video decoded here, a folder's images by the actors)."""
    import ray.data

    from ..video.io import is_video, probe_video, read_frames

    if path.is_dir():
        files = folder_images(path)
        return ray.data.from_items(folder_rows(files, pairs)), FrameSource(path, "folder", len(files))
    if is_video(path):
        info = probe_video(path)
        rows = frame_rows(read_frames(path), pairs)
        return ray.data.from_items(rows), FrameSource(path, "video", len(rows), info.fps, info.has_audio)
    raise InvalidInputError(f"expected a folder of images or a video file, got {path}")


def ordered_frames(dataset: Any, batch_size: int = 16) -> Iterator[tuple[int, np.ndarray]]:
    """The output rows as (index, frame) in index order; a gap or a repeat is an error."""
    expected = 0
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        for index, frame in zip(batch["index"], batch["frame"]):
            if int(index) != expected:
                raise InvalidInputError(f"expected output frame {expected}, got {int(index)}: order was lost")
            expected += 1
            yield int(index), np.asarray(frame, dtype=np.uint8)


def write_folder(frames: Iterator[tuple[int, np.ndarray]], out_dir: Path) -> int:
    """Each frame as ``{index:06d}.png`` in ``out_dir``; the count written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, frame in frames:
        write_image(out_dir / f"{index:06d}.png", frame)
        count += 1
    return count


def write_video(frames: Iterator[tuple[int, np.ndarray]], out: Path, fps: Fraction, audio_from: Path) -> int:
    """Encode the frames at ``fps`` into ``out`` with the source's audio carried over; the count."""
    from ..video.io import VideoWriter

    with VideoWriter(out, fps, audio_from=audio_from) as writer:
        for _, frame in frames:
            writer.write(frame)
    return int(writer.frames)
