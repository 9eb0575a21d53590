"""Video files with PyAV (the ``video`` extra): probe, decode to RGB frames, encode with audio carried over.

Frames are HxWx3 uint8 RGB arrays, the currency of :func:`process_frames`. The writer encodes
H.264 (libx264, yuv420p; MPEG-4 Part 2 where libx264 is missing) and remuxes the source's audio
packets unchanged, so sound survives super-resolution, style transfer and frame interpolation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InvalidInputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")


def _av() -> ModuleType:
    try:
        import av
    except ImportError as exc:
        raise BackendUnavailableError("video files need PyAV: pip install 'model_manager[video]'") from exc
    return av


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds: frame size, rate, count (as the container states it) and audio."""

    width: int
    height: int
    fps: Fraction
    frames: int
    duration_s: float
    has_audio: bool


def _open(path: str | Path) -> Any:
    """An input container; one clear error for a missing or unreadable file."""
    av = _av()
    if not Path(path).is_file():
        raise InvalidInputError(f"expected a video file, {path} does not exist")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise InvalidInputError(f"cannot read {path} as a video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise InvalidInputError(f"expected a video stream in {path}, found none")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, frame count and audio presence of ``path``."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or stream.guessed_rate or 25)
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        frames = stream.frames or round(duration * fps)
        return VideoInfo(
            stream.codec_context.width,
            stream.codec_context.height,
            fps,
            frames,
            duration,
            bool(container.streams.audio),
        )


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode ``path``'s first video stream as HxWx3 uint8 RGB frames."""
    av = _av()
    with _open(path) as container:
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise InvalidInputError(f"cannot decode {path}: {exc}") from None


class VideoWriter:
    """Encode RGB frames to ``path`` at ``fps``; on close, copy the audio of ``audio_from`` in."""

    def __init__(self, path: str | Path, fps: Fraction, audio_from: str | Path | None = None) -> None:
        av = self._av_module = _av()
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._video = self._container.add_stream(codec, rate=fps)
        self._video.pix_fmt = "yuv420p"
        self._source = _open(audio_from) if audio_from is not None else None
        self._audio = None
        if self._source is not None and self._source.streams.audio:
            self._audio = self._container.add_stream_from_template(self._source.streams.audio[0])
        self._started = False
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Encode one HxWx3 uint8 frame (H and W even: yuv420p); the first fixes the size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InvalidInputError(
                f"expected an HxWx3 uint8 frame, got {frame.dtype} of shape {frame.shape}"
            )
        if not self._started:
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                raise InvalidInputError(
                    f"expected even frame sizes for yuv420p, got {frame.shape[1]}x{frame.shape[0]}"
                )
            self._video.width, self._video.height = frame.shape[1], frame.shape[0]
            self._started = True
        packets = self._video.encode(self._av_module.VideoFrame.from_ndarray(frame, format="rgb24"))
        self._container.mux(packets)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, remux the source's audio, and finish the file."""
        try:
            if self._started:
                self._container.mux(self._video.encode())
            if self._audio is not None and self._source is not None:
                for packet in self._source.demux(self._source.streams.audio[0]):
                    if packet.dts is None:
                        continue
                    packet.stream = self._audio
                    self._container.mux(packet)
        finally:
            self._container.close()
            if self._source is not None:
                self._source.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
