"""Frame streams through a Runner: the async pipeline, tiled super-resolution, video files (PyAV)."""

from .frames import process_frames
from .tiling import max_image_size, tiled_infer

__all__ = ["max_image_size", "process_frames", "tiled_infer"]
