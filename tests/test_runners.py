"""The Runner contract on the eager backend: validation, kinds in = kinds out, padding, lifecycle, async."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from model_manager import InvalidInputError, RunnerClosedError, RunnerInfo, TorchRunner
from model_manager.descriptor import ModelDescriptor, TensorSpec
from model_manager.models import all_architectures

from .conftest import sample_inputs, small_config


def _runner(arch_id: str) -> TorchRunner:
    loaded = all_architectures()[arch_id].create(small_config(arch_id), seed=0)
    info = RunnerInfo(loaded.descriptor.model_type, arch_id, "none", "torch", "cpu", "fp32")
    return TorchRunner(loaded.module, loaded.descriptor, info)


@pytest.mark.parametrize("arch_id", ["TransformerNet", "ESPCN", "IFNet"])
def test_numpy_in_numpy_out_and_torch_in_torch_out(arch_id: str) -> None:
    runner = _runner(arch_id)
    inputs = sample_inputs(runner.descriptor, (64, 64))
    out_np = runner(*inputs)
    out_t = runner(*[torch.from_numpy(x) for x in inputs])
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    scale = runner.descriptor.scale
    assert out_np.shape == (1, 3, 64 * scale, 64 * scale)
    np.testing.assert_array_equal(out_np, out_t.numpy())


@pytest.mark.parametrize(("arch_id", "size"), [("TransformerNet", (66, 71)), ("IFNet", (70, 100))])
def test_sizes_off_the_multiple_are_padded_and_cropped_back(arch_id: str, size: tuple[int, int]) -> None:
    runner = _runner(arch_id)
    out = runner(*sample_inputs(runner.descriptor, size))
    assert out.shape[-2:] == size
    # the module alone, fed the same input, does not keep the size: the padding is what fixes it
    if arch_id == "TransformerNet":
        raw = runner.module(torch.from_numpy(sample_inputs(runner.descriptor, size)[0]))
        assert tuple(raw.shape[-2:]) != size


def test_padding_matches_the_reference_recipe_for_transformer_net() -> None:
    runner = _runner("TransformerNet")
    (x,) = sample_inputs(runner.descriptor, (62, 62))
    t = torch.from_numpy(x)
    padded = torch.nn.functional.pad(t, (0, 2, 0, 2), mode="reflect")
    with torch.inference_mode():
        expected = runner.module(padded)[..., :62, :62]
    np.testing.assert_array_equal(runner(x), expected.numpy())


def _bad_cases(desc: ModelDescriptor) -> list[tuple[str, list, str]]:
    good = sample_inputs(desc, (32, 32))[0]
    return [
        ("count", [good, good], r"expected 1 input\(s\) \(input\), got 2"),
        ("kind", [good.tolist()], "expected a numpy.ndarray or torch.Tensor, got list"),
        ("dtype", [good.astype(np.float64)], "expected dtype float32, got numpy float64"),
        ("rank", [good[0]], r"expected rank 4 \(batchx3xheightxwidth\), got shape \(3, 32, 32\)"),
        ("channels", [good[:, :1]], r"expected dimension 1 to be 3"),
        ("too small", [good[..., :8, :8]], "expected height and width >= 16, got 8x8"),
        ("nan", [np.where(good > 100, np.nan, good).astype(np.float32)], "expected finite values"),
        ("range", [good / 255.0 * 1000.0], r"expected values in 0\.\.255"),
        ("empty batch", [good[:0]], "expected a batch of at least 1"),
    ]


def test_bad_input_says_what_was_expected_and_what_came() -> None:
    runner = _runner("TransformerNet")
    for case, args, message in _bad_cases(runner.descriptor):
        with pytest.raises(InvalidInputError, match=message):
            runner(*args)
        assert issubclass(InvalidInputError, ValueError), case


def test_two_frame_inputs_must_agree() -> None:
    runner = _runner("IFNet")
    a, b, t = sample_inputs(runner.descriptor, (128, 128))
    with pytest.raises(InvalidInputError, match="same height and width"):
        runner(a, b[..., :, :64], t)
    with pytest.raises(InvalidInputError, match="same batch size"):
        runner(a, np.concatenate([b, b]), t)
    with pytest.raises(InvalidInputError, match=r"input 'timestep': expected rank 4"):
        runner(a, b, np.float32(0.5) * np.ones((1,), np.float32))


def test_closed_runner_refuses_and_close_is_idempotent() -> None:
    runner = _runner("ESPCN")
    with runner as r:
        r(*sample_inputs(runner.descriptor, (16, 16)))
    assert runner.closed
    runner.close()
    with pytest.raises(RunnerClosedError):
        runner(*sample_inputs(runner.descriptor, (16, 16)))
    assert "closed" in repr(runner)


class _Slow(nn.Module):
    """A real module whose forward holds the thread for a while (like a large model would)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.3)
        return x * 2


async def test_async_infer_does_not_block_the_event_loop() -> None:
    spec = TensorSpec("input", ("batch", 3, "height", "width"))
    desc = ModelDescriptor("super_resolution", "slow", (spec,), spec, size_min=1)
    runner = TorchRunner(
        _Slow(), desc, RunnerInfo("super_resolution", "slow", "none", "torch", "cpu", "fp32")
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    out = await runner.infer(np.ones((1, 3, 8, 8), np.float32))
    task.cancel()
    assert float(out.max()) == 2.0
    assert ticks >= 10  # the loop kept running during the 0.3 s forward


class _Gated(nn.Module):
    """A real module whose forward waits for the test to let it finish (a call held in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.go.wait(10), "the test never let the call finish"
        return x * 2


def test_close_during_a_call_refuses_new_calls_and_releases_when_the_call_returns() -> None:
    """Issue 18, defect 2: close() used to free the backend under a call still running on it."""
    spec = TensorSpec("input", ("batch", 3, "height", "width"))
    desc = ModelDescriptor("super_resolution", "gated", (spec,), spec, size_min=1)
    gated = _Gated()
    runner = TorchRunner(gated, desc, RunnerInfo("super_resolution", "gated", "none", "torch", "cpu", "fp32"))
    results: list[np.ndarray] = []
    call = threading.Thread(target=lambda: results.append(runner(np.ones((1, 3, 4, 4), np.float32))))
    call.start()
    assert gated.entered.wait(10)
    runner.close()  # returns at once: a call is in flight
    assert runner.closed and runner.module is not None  # its resources stay until it returns
    with pytest.raises(RunnerClosedError):
        runner(np.ones((1, 3, 4, 4), np.float32))
    gated.go.set()
    call.join(10)
    assert len(results) == 1 and float(results[0].max()) == 2.0
    assert runner.module is None  # released by the last call out
    idle = _runner("ESPCN")
    idle.close()
    assert idle.module is None  # nothing in flight: released by close itself
