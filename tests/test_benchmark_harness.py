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
