"""``model-manager run``: a model on an image (or ``sample:NAME``), a folder of images, or a video file.

The input and the output path are checked before anything is loaded or built: a missing input is
a model_manager error (exit 1), an output nothing can write (``out.jpgg``, a folder's output that
is a file, a video's output that is not a video) a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import ModelConfig
from ..descriptor import ShapeRange
from ..errors import BackendUnavailableError, InvalidInputError
from ..images import IMAGE_SUFFIXES, folder_images, from_batch, read_image, to_batch, write_image
from ..manager import ModelManager
from ..samples import sample_path
from ..video.io import VIDEO_SUFFIXES, is_video
from .display import clear_build_line
from .optimize import load_runner
from .outcome import UsageError

InputKind = Literal["image", "folder", "video"]


async def run(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    kind = check_paths(args.input, args.output)
    if args.ray is not None:
        return await run_ray(args, config, kind)
    if kind == "folder":
        return await run_folder(args, config)
    if kind == "video":
        return await run_video(args, config)
    return await run_image(args, config)


# -- checks before any work -----------------------------------------------------------------------
def check_paths(source: str, output: Path) -> InputKind:
    """What the input is; an error when it does not exist or when ``output`` cannot hold the result."""
    if source.startswith("sample:"):
        sample_path(source.split(":", 1)[1])  # an unknown sample name is an error naming the valid ones
        kind: InputKind = "image"
    elif not Path(source).exists():
        raise InvalidInputError(
            f"expected an image, a folder of images or a video as input, but {source!r} does not exist"
        )
    else:
        kind = "folder" if Path(source).is_dir() else "video" if is_video(source) else "image"
    suffix = output.suffix.lower()
    if kind == "folder":
        if output.exists() and not output.is_dir():
            raise UsageError(f"the output for a folder of images is a folder; {str(output)!r} is a file")
        if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
            raise UsageError(
                f"the output for a folder of images is a folder, got {str(output)!r}; "
                "pass a folder name (the frames are written into it as 000000.png ...)"
            )
    elif kind == "video":
        if suffix not in VIDEO_SUFFIXES:
            raise UsageError(
                f"the output for a video is a video file ({', '.join(VIDEO_SUFFIXES)}), got {str(output)!r}"
            )
    elif output.is_dir():
        raise UsageError(f"the output for an image is an image file, {str(output)!r} is a folder")
    elif not image_format_writes(suffix):
        raise UsageError(
            f"cannot write an image as {str(output)!r}: expected an image suffix "
            f"({', '.join(IMAGE_SUFFIXES)} or another that Pillow writes), got {suffix or 'none'!r}"
        )
    return kind


def image_format_writes(suffix: str) -> bool:
    """Whether :func:`write_image` can write an RGB image to a file with this suffix (Pillow tried)."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        return False
    try:  # some registered formats are stubs or need another mode (XBM, MSP, BUFR ...)
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError):
        return False
    return True


# -- one image -------------------------------------------------------------------------------------
def _read(spec: str) -> np.ndarray:
    """An image from a path or ``sample:NAME``."""
    if spec.startswith("sample:"):
        return read_image(sample_path(spec.split(":", 1)[1]))
    return read_image(spec)


async def run_image(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    frames = [_read(args.input)]  # read and check the inputs before any build starts
    if args.model_type == "interpolation":
        if args.second is None:
            raise InvalidInputError("interpolation needs two frames: pass --second PATH")
        if not 0.0 <= args.timestep <= 1.0:
            raise InvalidInputError(f"expected --timestep in 0..1, got {args.timestep}")
        frames.append(_read(args.second))
    async with ModelManager(config) as manager:
        runner = await load_runner(manager, args)
        spec = runner.input_spec[0]
        inputs = [to_batch(f, spec.value_range) for f in frames]
        if args.model_type == "interpolation":
            inputs.append(np.full((1, 1, 1, 1), args.timestep, dtype=np.float32))
        output = await runner.infer(*inputs)
        image = from_batch(output, runner.descriptor.output.value_range)[0]
        write_image(args.output, image)
        return {
            "input": args.input,
            "output": str(args.output),
            "input_size": list(inputs[0].shape[-2:]),
            "output_size": list(image.shape[:2]),
            "runner": runner.info.to_dict(),
        }


# -- a folder of images, a video ------------------------------------------------------------------
def _frame_bar(args: argparse.Namespace, total: int | None = None) -> Any:
    """The frame progress bar (after the build line is gone: the runner is loaded first)."""
    from tqdm import tqdm

    clear_build_line()
    return tqdm(
        total=total, desc=f"{args.model_type}/{args.name}", unit="frame", disable=args.json or args.quiet
    )


async def run_folder(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """Every image of a folder (a frame sequence for interpolation) through process_frames."""
    from ..video import process_frames

    files = folder_images(Path(args.input))
    out_dir = Path(args.output)
    async with ModelManager(config) as manager:
        runner = await load_runner(manager, args)
        out_dir.mkdir(parents=True, exist_ok=True)
        frames = (read_image(f) for f in files)
        written: list[str] = []
        with _frame_bar(args) as bar:
            async for frame in process_frames(runner, frames, batch_size=args.batch_size, factor=args.factor):
                written.append(str(write_image(out_dir / f"{len(written):06d}.png", frame)))
                bar.update()
        return {
            "input": args.input,
            "output": str(out_dir),
            "frames_in": len(files),
            "frames_out": len(written),
            "runner": runner.info.to_dict(),
        }


async def run_video(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """A video file through process_frames; audio carried over, frame rate times --factor."""
    from ..video import process_frames
    from ..video.io import VideoWriter, probe_video, read_frames

    info = probe_video(args.input)  # a clear error before any build starts
    async with ModelManager(config) as manager:
        runner = await load_runner(manager, args)
        factor = args.factor if args.model_type == "interpolation" else 1
        total = (info.frames - 1) * factor + 1 if factor > 1 else info.frames
        with (
            VideoWriter(args.output, info.fps * factor, audio_from=args.input) as writer,
            _frame_bar(args, total) as bar,
        ):
            frames = read_frames(args.input)
            async for frame in process_frames(runner, frames, batch_size=args.batch_size, factor=args.factor):
                writer.write(frame)
                bar.update()
        return {
            "input": args.input,
            "output": str(args.output),
            "frames_in": info.frames,
            "frames_out": writer.frames,
            "fps": float(info.fps * factor),
            "audio": info.has_audio,
            "runner": runner.info.to_dict(),
        }


# -- on Ray ---------------------------------------------------------------------------------------
async def run_ray(args: argparse.Namespace, config: ModelConfig, kind: str) -> dict[str, Any]:
    """A folder or a video through Ray Data (``--ray [ADDRESS] --actors N``), outputs in order."""
    if kind == "image":
        raise InvalidInputError(f"--ray processes a folder of images or a video, got the image {args.input}")
    try:
        from ..distributed.batch import run_on_ray
    except ImportError as exc:
        raise BackendUnavailableError("--ray needs Ray: pip install 'model_manager[ray]'") from exc
    shape_range = ShapeRange(args.max_size, args.max_batch) if args.max_size else None
    result = await asyncio.to_thread(
        run_on_ray,
        args.model_type,
        args.name,
        Path(args.input),
        Path(args.output),
        config=config,
        optimization=args.optimization,
        actors=args.actors,
        batch_size=args.batch_size,
        factor=args.factor,
        shape_range=shape_range,
        address=None if args.ray == "local" else args.ray,
    )
    return {"input": args.input, "output": str(args.output), "ray": dataclasses.asdict(result)}
