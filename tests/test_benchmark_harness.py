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
