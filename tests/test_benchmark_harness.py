"""The timing harness's logic (counts, percentiles, serialisation); no wall-clock assertions."""

from __future__ import annotations

import json
import time

import pytest

from model_manager.optim.benchmark import TABLE_HEADER, benchmark, format_table, machine_info, percentile


def test_percentile_interpolates() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile([3.0], 90) == 3.0


def test_warmup_and_iterations_are_counted() -> None:
    calls = []
    result = benchmark(lambda: calls.append(1), label="noop", warmup=4, iterations=7, batch=2, size_bytes=10)
    assert len(calls) == 11 and result.iterations == 7
    assert result.p90_ms >= result.median_ms >= result.min_ms
    assert result.throughput_per_s == pytest.approx(2 * 1000.0 / result.median_ms)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["label"] == "noop" and data["size_bytes"] == 10


def test_time_budget_stops_early_after_three_runs() -> None:
    result = benchmark(lambda: time.sleep(0.02), warmup=0, iterations=100, max_seconds=0.01)
    assert result.iterations == 3


def test_rows_and_table() -> None:
    base = benchmark(lambda: sum(range(20000)), label="base", warmup=1, iterations=3)
    fast = benchmark(lambda: None, label="fast", warmup=1, iterations=3)
    rows = [base.row(), fast.row(base)]
    assert rows[1][3].endswith("x") and rows[0][3] == "-"
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| " + TABLE_HEADER[0])
    assert len(table.splitlines()) == 4
    assert {"cpu", "cores", "torch", "onnxruntime", "date"} <= set(machine_info())


def test_count_macs_matches_the_formula_for_conv_deconv_and_linear() -> None:
    """3x3 conv 4->8 on 1x4x10x12 = 8*10*12*4*9; a 2x2 stride-2 deconv and a linear add theirs."""
    import torch
    from torch import nn

    from model_manager.optim.macs import count_macs

    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ConvTranspose2d(8, 2, 2, stride=2))
    x = torch.zeros(1, 4, 10, 12)
    assert count_macs(net, [x]) == 8 * 10 * 12 * 4 * 9 + (8 * 10 * 12) * 2 * 4
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    assert count_macs(grouped, [torch.zeros(2, 8, 5, 5)]) == 2 * 8 * 5 * 5 * 2 * 9
    assert count_macs(nn.Linear(16, 4), [torch.zeros(3, 16)]) == 3 * 4 * 16


def test_interleaved_pruning_keeps_the_baseline_and_drops_what_cannot_win() -> None:
    """The probe round drops a function 30x slower than the best (one call kept), ``brief`` ones keep
    their probe only, the baseline in ``keep`` is timed in full; without pruning everyone is."""
    from model_manager.optim.benchmark import benchmark_interleaved

    calls = {"fast": 0, "far": 0, "failed": 0, "base": 0}

    def fn(label: str, seconds: float):
        def run() -> None:
            calls[label] += 1
            time.sleep(seconds)

        return run

    fns = {
        "fast": fn("fast", 0.001),
        "far": fn("far", 0.03),
        "failed": fn("failed", 0.001),
        "base": fn("base", 0.03),
    }
    out = benchmark_interleaved(
        fns, warmup=0, rounds=6, drop_slower_than=1.3, keep=("base",), brief=("failed",)
    )
    assert out["far"].iterations == 1 and calls["far"] == 1
    assert out["failed"].iterations == 1 and calls["failed"] == 1
    assert out["fast"].iterations >= 6 and out["base"].iterations >= 6
    plain = benchmark_interleaved(fns, warmup=0, rounds=6)
    assert all(r.iterations >= 6 for r in plain.values())


def test_interleaved_seconds_each_stops_a_function_that_spent_its_budget() -> None:
    from model_manager.optim.benchmark import benchmark_interleaved

    out = benchmark_interleaved(
        {"slow": lambda: time.sleep(0.01), "quick": lambda: None}, warmup=0, rounds=100, seconds_each=0.05
    )
    assert out["slow"].iterations == 9  # three visits of three timed calls, then its 0.05 s were spent
    assert out["quick"].iterations >= 100
