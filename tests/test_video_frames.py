"""process_frames: batching, order, interpolation in-betweens, tiled super-resolution, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from model_manager import ModelConfig, ModelManager
from model_manager.errors import InvalidInputError
from model_manager.images import from_batch, to_batch
from model_manager.optim.quality import psnr
from model_manager.samples import load_sample
from model_manager.video import process_frames, tiled_infer


def _clip(count: int, height: int = 48, width: int = 64, step: int = 5) -> list[np.ndarray]:
    """A pan across a real photo: frame k is the crop shifted by k * step pixels."""
    photo = load_sample("astronaut")
    return [
        np.ascontiguousarray(photo[40 : 40 + height, 20 + k * step : 20 + k * step + width])
        for k in range(count)
    ]


async def _collect(stream: AsyncIterator[np.ndarray]) -> list[np.ndarray]:
    return [frame async for frame in stream]


@pytest.fixture
async def manager(config: ModelConfig) -> AsyncIterator[ModelManager]:
    async with ModelManager(config) as m:
        yield m


async def test_super_resolution_frames_come_back_in_order_equal_to_single_calls(
    manager: ModelManager,
) -> None:
    runner = await manager.load_optimized_model("super_resolution", "default", "none")
    frames = _clip(5)
    out = await _collect(process_frames(runner, frames, batch_size=2))
    assert len(out) == 5
    for frame, result in zip(frames, out):
        single = from_batch(runner(to_batch(frame)))[0]
        assert result.shape == (96, 128, 3) and result.dtype == np.uint8
        assert np.abs(result.astype(int) - single.astype(int)).max() <= 1  # batched vs single rounding


@pytest.mark.parametrize("factor", [2, 3])
async def test_interpolation_multiplies_the_frame_count_and_keeps_the_sources(
    manager: ModelManager, factor: int
) -> None:
    runner = await manager.load_optimized_model("interpolation", "default", "none")
    frames = _clip(3, 64, 64, step=4)
    out = await _collect(process_frames(runner, frames, batch_size=3, factor=factor))
    assert len(out) == (len(frames) - 1) * factor + 1
    for k, frame in enumerate(frames):
        assert np.array_equal(out[k * factor], frame)
    t = np.full((1, 1, 1, 1), 1 / factor, dtype=np.float32)
    expected = from_batch(runner(to_batch(frames[0]), to_batch(frames[1]), t))[0]
    assert np.abs(out[1].astype(int) - expected.astype(int)).max() <= 1


async def test_async_sources_and_size_changes_between_batches(manager: ModelManager) -> None:
    runner = await manager.load_optimized_model("super_resolution", "default", "none")
    frames = [*_clip(2), *_clip(2, 32, 40)]

    async def source() -> AsyncIterator[np.ndarray]:
        for f in frames:
            yield f

    out = await _collect(process_frames(runner, source(), batch_size=4))
    assert [o.shape[:2] for o in out] == [(96, 128), (96, 128), (64, 80), (64, 80)]


async def test_a_failing_source_raises_after_the_frames_before_it(manager: ModelManager) -> None:
    runner = await manager.load_optimized_model("super_resolution", "default", "none")

    def source() -> Iterator[np.ndarray]:
        yield from _clip(2)
        raise OSError("decoder lost the stream")

    seen = []
    with pytest.raises(OSError, match="decoder lost the stream"):
        async for frame in process_frames(runner, source(), batch_size=1):
            seen.append(frame)
    assert len(seen) <= 2


async def test_bad_frames_and_arguments_name_what_was_expected(manager: ModelManager) -> None:
    sr = await manager.load_optimized_model("super_resolution", "default", "none")
    with pytest.raises(InvalidInputError, match="expected an HxWxC uint8 image, got float32"):
        await _collect(process_frames(sr, [np.zeros((8, 8, 3), np.float32)]))
    with pytest.raises(InvalidInputError, match="batch_size >= 1, got 0"):
        await _collect(process_frames(sr, _clip(1), batch_size=0))
    interp = await manager.load_optimized_model("interpolation", "default", "none")
    with pytest.raises(InvalidInputError, match="factor >= 2, got 1"):
        await _collect(process_frames(interp, _clip(2, 64, 64), factor=1))
    with pytest.raises(InvalidInputError, match="frames change size"):
        await _collect(process_frames(interp, [*_clip(1, 64, 64), *_clip(1, 64, 128)]))


async def test_tiled_super_resolution_matches_the_whole_frame(manager: ModelManager) -> None:
    runner = await manager.load_optimized_model("super_resolution", "default", "none")
    frame = load_sample("coffee")[:120, :160]
    whole = runner(to_batch(frame))
    tiled = tiled_infer(runner, to_batch(frame), scale=2, tile=48, overlap=16)
    assert tiled.shape == whole.shape
    assert psnr(whole, tiled) > 60.0  # 70.4 dB measured at overlap 16; 50.2 dB with no overlap
    out = await _collect(process_frames(runner, [frame], tile=48))
    assert out[0].shape == (240, 320, 3)
    assert psnr(from_batch(whole)[0], out[0], value_range=(0.0, 255.0)) > 40.0


def test_tiling_rejects_an_overlap_as_large_as_the_tile() -> None:
    with pytest.raises(InvalidInputError, match="0 <= overlap < tile, got overlap 48, tile 48"):
        tiled_infer(lambda x: x, np.zeros((1, 3, 100, 100), np.float32), scale=1, tile=48, overlap=48)


async def test_a_failing_batch_leaves_no_unretrieved_error_behind(
    manager: ModelManager, caplog: pytest.LogCaptureFixture
) -> None:
    """Batch k fails while batch k+1 runs: one InvalidInputError, and asyncio logs no orphaned failure."""
    import asyncio
    import gc

    runner = await manager.load_optimized_model("super_resolution", "default", "none")
    too_small = [np.zeros((2, 2, 3), np.uint8)] * 3
    with pytest.raises(InvalidInputError, match="height and width"):
        await _collect(process_frames(runner, too_small, batch_size=1))
    await asyncio.sleep(0.2)  # let the orphaned batch finish in its thread
    gc.collect()
    assert "never retrieved" not in caplog.text
