"""The one timing harness every benchmark in the project uses: warm-up, timed runs, median and p90.

Results are dataclasses that print as table rows and serialise to JSON. Peak memory is the
resident-set growth over the run, sampled from /proc (Linux), or CUDA's peak allocation when the
function runs on a GPU. Tests never assert on these numbers; benchmarks print them.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BenchmarkResult:
    """Latency statistics (milliseconds) of one function at one input, plus size and memory."""

    label: str
    iterations: int
    batch: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    throughput_per_s: float
    size_bytes: int | None = None
    peak_memory_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def ratio_to(self, baseline: BenchmarkResult) -> float:
        """Speedup against ``baseline``: baseline median / this median (> 1 means faster)."""
        return baseline.median_ms / self.median_ms

    def row(self, baseline: BenchmarkResult | None = None) -> list[str]:
        size = "-" if self.size_bytes is None else f"{self.size_bytes / 1e6:.2f} MB"
        mem = "-" if self.peak_memory_bytes is None else f"{self.peak_memory_bytes / 1e6:.0f} MB"
        ratio = "-" if baseline is None else f"{self.ratio_to(baseline):.2f}x"
        return [
            self.label,
            f"{self.median_ms:.2f}",
            f"{self.p90_ms:.2f}",
            ratio,
            f"{self.throughput_per_s:.1f}",
            size,
            mem,
        ]


TABLE_HEADER = ["case", "median ms", "p90 ms", "vs baseline", "items/s", "size", "peak mem"]


def benchmark(
    fn: Callable[[], Any],
    *,
    label: str = "",
    warmup: int = 3,
    iterations: int = 20,
    max_seconds: float | None = None,
    batch: int = 1,
    size_bytes: int | None = None,
    cuda: bool = False,
) -> BenchmarkResult:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``iterations`` timed ones.

    ``max_seconds`` stops the timed loop early (after at least 3 runs) so slow cases fit a
    budget. Peak memory is the growth over warm-up and timed runs (the call's working memory).
    ``cuda=True`` times each call with CUDA events on the current stream (the work the call queued,
    to completion) and reports CUDA peak memory.
    """
    sync = _cuda_sync if cuda else _no_sync
    sampler = _PeakMemory(cuda)  # spans the warm-up: that is where working memory is allocated
    times: list[float] = []
    with sampler:
        for _ in range(warmup):
            fn()
        sync()
        started = time.perf_counter()
        for _ in range(iterations):
            times.append(_cuda_event_ms(fn) if cuda else _wall_ms(fn))
            if max_seconds is not None and len(times) >= 3 and time.perf_counter() - started > max_seconds:
                break
    return _result(label, times, batch, size_bytes, sampler.peak)


def _wall_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def _cuda_event_ms(fn: Callable[[], Any]) -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end))


FAR_SLOWER = 2.5
"""With ``drop_slower_than``, how much slower than the best probe call a function is dropped at once."""


def benchmark_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    rounds: int = 20,
    max_seconds: float | None = None,
    batch: int = 1,
    cuda: bool = False,
    block: int = 3,
    drop_slower_than: float | None = None,
    keep: Collection[str] = (),
    brief: Collection[str] = (),
    seconds_each: float | None = None,
) -> dict[str, BenchmarkResult]:
    """Time several functions in alternating blocks (A A A, B B B, A A A, ...) so drift hits all alike.

    Used to compare candidates in one process: a machine that slows down halfway (another
    process, thermal limits, an allocator left fragmented by calibration) cannot favour whichever
    candidate happened to be timed first. Each visit starts with one untimed call: thread pools
    of the previous backend (ONNX Runtime's and OpenMP's spin-waiting workers) are still burning
    the cores for a few milliseconds after it returns, and that must not be charged to the next.
    ``rounds`` counts timed calls per function; ``max_seconds`` bounds the total after 3 visits;
    ``seconds_each`` stops timing a function (after 3 visits) once its timed calls add up to that.
    Pruning, for choosing the fastest (an ``auto`` build), never for a figure someone quotes:
    ``drop_slower_than`` starts with a probe round (one timed call each): a function more than
    ``FAR_SLOWER`` times slower than the best probe keeps that one call as its result and is not
    timed further (ONNX Runtime's dynamic INT8 runs conv nets 5-10x slower than the rest: more
    visits would cost seconds and tell nothing); after 3 visits, one whose median is more than
    ``drop_slower_than`` times the best median stops being timed (it cannot win; its result keeps
    the calls it had). Functions in ``keep`` (the baseline a speedup is measured against) are
    never dropped; functions in ``brief`` (e.g. a candidate that failed its quality gate: a figure
    for the report only) keep their probe call and nothing more.
    """
    sync = _cuda_sync if cuda else _no_sync
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {label: [] for label in fns}
    started = time.perf_counter()
    active = dict(fns)
    if drop_slower_than is not None or brief:
        active = _probe(active, times, sync, keep, brief)
    visits = 0
    while active and min(len(times[label]) for label in active) < rounds:
        for label, fn in active.items():
            fn()  # untimed: absorbs the previous backend's spinning threads
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                sync()
                times[label].append((time.perf_counter() - t0) * 1000.0)
        visits += 1
        if drop_slower_than is not None and visits >= 3:
            active = _contenders(active, times, drop_slower_than, keep)
        if seconds_each is not None and visits >= 3:
            active = {label: fn for label, fn in active.items() if sum(times[label]) < 1000.0 * seconds_each}
        if max_seconds is not None and visits >= 3 and time.perf_counter() - started > max_seconds:
            break
    return {label: _result(label, t, batch, None, None) for label, t in times.items()}


def _probe(
    fns: dict[str, Callable[[], Any]],
    times: dict[str, list[float]],
    sync: Callable[[], None],
    keep: Collection[str],
    brief: Collection[str],
) -> dict[str, Callable[[], Any]]:
    """One timed call each; the functions worth timing further (the others keep that call)."""
    probe = {}
    for label, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        sync()
        probe[label] = (time.perf_counter() - t0) * 1000.0
    servable = [ms for label, ms in probe.items() if label not in brief] or list(probe.values())
    best = min(servable)
    active = {
        label: fn
        for label, fn in fns.items()
        if label in keep or (label not in brief and probe[label] <= FAR_SLOWER * best)
    }
    for label in fns.keys() - active.keys():
        times[label].append(probe[label])
    return active


def _contenders(
    active: dict[str, Callable[[], Any]],
    times: Mapping[str, list[float]],
    ratio: float,
    keep: Collection[str],
) -> dict[str, Callable[[], Any]]:
    """The functions still worth timing: within ``ratio`` of the best median, or kept."""
    medians = {label: statistics.median(times[label]) for label in active}
    best = min(medians.values())
    return {label: fn for label, fn in active.items() if label in keep or medians[label] <= ratio * best}


def _result(
    label: str, times: list[float], batch: int, size: int | None, peak: int | None
) -> BenchmarkResult:
    median = statistics.median(times)
    return BenchmarkResult(
        label=label,
        iterations=len(times),
        batch=batch,
        median_ms=median,
        p90_ms=percentile(times, 90),
        mean_ms=statistics.fmean(times),
        min_ms=min(times),
        throughput_per_s=batch * 1000.0 / median,
        size_bytes=size,
        peak_memory_bytes=peak,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = TABLE_HEADER) -> str:
    """A Markdown table (readable in a terminal, pasteable into the README)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, threads, library versions, date."""
    import onnxruntime
    import torch

    from .hardware import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
    }


def _no_sync() -> None:
    return None


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


class _PeakMemory:
    """Peak resident-set growth during a block (a 5 ms sampler thread), or CUDA peak allocation."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0
        self._max = 0

    def __enter__(self) -> _PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        elif _rss_bytes() is not None:
            self._base = self._max = _rss_bytes() or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._max = max(self._max, _rss_bytes() or 0)

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            self.peak = torch.cuda.max_memory_allocated() - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, _rss_bytes() or 0)
            self.peak = self._max - self._base


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
