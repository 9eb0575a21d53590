"""What each CLI sub-command does, as async functions returning JSON-ready data (cli.py prints it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import load_checkpoint
from .config import ModelConfig
from .errors import InvalidInputError
from .images import from_batch, read_image, to_batch, write_image
from .manager import ModelManager
from .runners import Runner
from .samples import SAMPLE_NAMES, sample_path


async def list_models(args: argparse.Namespace, config: ModelConfig) -> list[dict[str, Any]]:
    async with ModelManager(config) as manager:
        return manager.list_models(args.model_type)


async def list_samples(args: argparse.Namespace, config: ModelConfig) -> list[dict[str, str]]:
    return [{"name": n, "path": str(sample_path(n))} for n in SAMPLE_NAMES]


async def inspect_checkpoint(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    import asyncio

    loaded = await asyncio.to_thread(load_checkpoint, args.checkpoint)
    params = sum(p.numel() for p in loaded.module.parameters())
    return {
        "path": str(args.checkpoint),
        "architecture": loaded.architecture,
        "parameters": params,
        "descriptor": loaded.descriptor.to_dict(),
    }


def _read(spec: str) -> np.ndarray:
    """An image from a path or ``sample:NAME``."""
    if spec.startswith("sample:"):
        return read_image(sample_path(spec.split(":", 1)[1]))
    return read_image(spec)


async def _load_runner(manager: ModelManager, args: argparse.Namespace) -> Runner:
    """The command's runner: ``--checkpoint`` registered under NAME first, then the optimization loaded."""
    if args.checkpoint is not None:
        await manager.register_checkpoint(args.model_type, args.name, args.checkpoint)
    return await manager.load_optimized_model(args.model_type, args.name, args.optimization)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _folder_images(folder: Path) -> list[Path]:
    """The folder's image files in name order; an error naming the folder when there are none."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(f"expected image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}, found none")
    return files


async def run_folder(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """Every image of a folder (a frame sequence for interpolation) through process_frames."""
    from tqdm import tqdm

    from .video import process_frames

    files = _folder_images(Path(args.input))
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    async with ModelManager(config) as manager:
        runner = await _load_runner(manager, args)
        frames = (read_image(f) for f in files)
        written: list[str] = []
        with tqdm(desc=f"{args.model_type}/{args.name}", unit="frame", disable=args.json) as bar:
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
    from tqdm import tqdm

    from .video import process_frames
    from .video.io import VideoWriter, probe_video, read_frames

    info = probe_video(args.input)  # a clear error before any build starts
    async with ModelManager(config) as manager:
        runner = await _load_runner(manager, args)
        factor = args.factor if args.model_type == "interpolation" else 1
        total = (info.frames - 1) * factor + 1 if factor > 1 else info.frames
        with (
            VideoWriter(args.output, info.fps * factor, audio_from=args.input) as writer,
            tqdm(total=total, desc=f"{args.model_type}/{args.name}", unit="frame", disable=args.json) as bar,
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


async def run_image(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    from .video.io import is_video

    if Path(args.input).is_dir():
        return await run_folder(args, config)
    if is_video(args.input):
        return await run_video(args, config)
    frames = [_read(args.input)]  # read and check the inputs before any build starts
    if args.model_type == "interpolation":
        if args.second is None:
            raise InvalidInputError("interpolation needs two frames: pass --second PATH")
        if not 0.0 <= args.timestep <= 1.0:
            raise InvalidInputError(f"expected --timestep in 0..1, got {args.timestep}")
        frames.append(_read(args.second))
    async with ModelManager(config) as manager:
        runner = await _load_runner(manager, args)
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


async def optimize(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """Build (first time) or load (cache hit) the artifact; what was chosen, why, and where it lives."""
    async with ModelManager(config) as manager:
        runner = await _load_runner(manager, args)
        return runner.info.to_dict()


async def demo(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    from .demo import run_demo

    if args.frames < 2 or args.size < 16:
        raise InvalidInputError(f"expected --frames >= 2 and --size >= 16, got {args.frames} and {args.size}")
    return await run_demo(
        config, args.out, args.model_type, args.name, args.optimization, args.frames, args.size, not args.json
    )


def format_text(command: str, result: Any) -> str:
    """Human-readable rendering of a command's result."""
    if command == "demo":
        from .demo import format_demo

        return format_demo(result)
    if command == "optimize":
        reason = result["decision"].get("reason", "asked for it")
        cache = {True: "cache hit", False: "built and stored", None: "not cached"}[result["cache_hit"]]
        return (
            f"{result['model_type']}/{result['name']}: {result['strategy']} ({result['backend']}, "
            f"{result['precision']}), {cache}\n{reason}\n{result['artifact_path'] or ''}"
        ).rstrip()
    if command == "bench":
        from .bench_command import format_bench

        return format_bench(result)
    if command == "list":
        return _models_table(result)
    if command == "samples":
        return "\n".join(f"{r['name']:<10} {r['path']}" for r in result)
    if command == "inspect":
        d = result["descriptor"]
        return (
            f"{result['path']}: {result['architecture']}, {result['parameters']:,} parameters, "
            f"scale x{d['scale']}, hyperparameters {d['hyperparameters']}"
        )
    if command == "run":
        info = result["runner"]
        backend = f"[{info['strategy']}, {info['backend']}, {info['device']}]"
        used = f"with {info['model_type']}/{info['name']} {backend}"
        if "frames_out" in result:
            return (
                f"wrote {result['frames_out']} frames ({result['frames_in']} in) to {result['output']} {used}"
            )
        size = f"{result['output_size'][1]}x{result['output_size'][0]}"
        return f"wrote {result['output']} ({size}) {used}"
    return str(result)


def _models_table(rows: list[dict[str, Any]]) -> str:
    header = ("TYPE", "NAME", "ARCHITECTURE", "PARAMS", "IN", "RANGE", "SCALE", "SIZE", "WEIGHTS")
    lines = [header]
    for r in rows:
        d = r["descriptor"]
        lo, hi = d["inputs"][0]["value_range"]
        ins = "+".join(s["name"] for s in d["inputs"])
        size = f">={d['size_min']}, x{d['size_multiple']}"
        name = r["name"] + (" (default)" if r["default"] else "")
        params = "-" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f}M"
        lines.append(
            (
                r["model_type"],
                name,
                r["architecture"],
                params,
                ins,
                f"{lo:g}..{hi:g}",
                f"x{d['scale']}",
                size,
                r["weights"],
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line[:-1], widths)) + "  " + str(line[-1]) for line in lines
    )
