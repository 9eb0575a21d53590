"""The public manager path on a CUDA GPU: every strategy a user can ask for, as served, in one table.

    python benchmarks/gpu_manager.py [--size 256] [--iterations 30] [--models TYPE ...] [--json PATH]
    python benchmarks/gpu_manager.py --device cpu --models super_resolution --iterations 5  # smoke

Per default model, one ``ModelManager`` (``device="cuda"``, a temporary cache folder) loads each
strategy through ``load_optimized_model``: ``none`` (eager FP32, the baseline), ``fp16``, ``onnx``
(ONNX Runtime's CUDA provider; skipped, saying why, where onnxruntime-gpu is absent), ``tensorrt``,
``tensorrt-int8`` and ``auto`` (on CUDA a fallback chain: the first link that builds and passes its
gate is served, each failure a ``fell back:`` note). A strategy this machine cannot serve
(``StrategyUnavailableError``) is a row saying why. Each served runner is timed with the one
harness (``optim.benchmark.benchmark``, CUDA events) on the shipped sample photos at SIZE x SIZE;
the ratio is eager FP32's median over the row's, measured in the same run; PSNR is against eager
FP32's output, checked against the gate of the served precision (``ModelConfig.quality``). Each
row also shows the strategy served (``runner.info.strategy``), the cache hit, the load seconds (the
build on a miss) and ``runner.info.notes``. A second process then loads ``auto`` again from the same
cache folder: it must be a cache hit, and its output must pass the gate against its own eager FP32.

Exit 1 when a hard expectation fails: a row raised something other than StrategyUnavailableError
or BackendUnavailableError, ``auto`` served eager FP32 without notes saying why, the second process
was not a cache hit, or a served row's PSNR is below its gate. Without a CUDA GPU (and no
``--device cpu``) nothing is measured and the exit is 0; ``--device cpu`` runs ``none``, ``onnx``
and ``auto`` on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from child import ChildFailed, call_in_child

if TYPE_CHECKING:
    from model_manager import ModelConfig

MODELS = (("super_resolution", "default"), ("style_transfer", "default"), ("interpolation", "default"))
STRATEGIES = {
    "cuda": ("none", "fp16", "onnx", "tensorrt", "tensorrt-int8", "auto"),
    "cpu": ("none", "onnx", "auto"),
}
SECOND = "auto, 2nd process"
AUTO_BUDGET_S = 1.0
"""``ModelConfig.auto_time_budget_s``: seconds each build times each candidate (bounds the run)."""
HEADER = ["model", "strategy", "served", "median ms", "p90 ms", "vs eager FP32", "PSNR dB (gate)"]
HEADER += ["cache hit", "load s", "notes"]


@dataclass
class Row:
    """One strategy requested for one model: what was served, how fast, how close to eager FP32."""

    model: str
    strategy: str
    status: str = "ok"
    """ok (served), skipped (StrategyUnavailableError: this machine cannot serve it) or error."""
    served: str = "-"
    precision: str = ""
    median_ms: float | None = None
    p90_ms: float | None = None
    ratio: float | None = None
    psnr_db: float | None = None
    min_psnr_db: float | None = None
    cache_hit: bool | None = None
    load_s: float | None = None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None
    """The hard expectation this row failed, if any (the exit code is 1 when any row has one)."""

    def cells(self) -> list[str]:
        """The row as table cells."""
        served = {"skipped": "skipped", "error": "ERROR"}.get(self.status, self.served)
        gate = "" if self.min_psnr_db is None else f" ({self.min_psnr_db:.0f})"
        notes = "; ".join([*self.notes, *([f"[FAILED: {self.problem}]"] if self.problem else [])])
        return [
            self.model,
            self.strategy,
            served,
            _num(self.median_ms, ".2f"),
            _num(self.p90_ms, ".2f"),
            _num(self.ratio, ".2f", "x"),
            _num(self.psnr_db, ".1f", gate),
            "-" if self.cache_hit is None else str(self.cache_hit),
            _num(self.load_s, ".1f"),
            notes or "-",
        ]


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    """``value`` formatted, or "-" when it is unknown."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type, the first line of its message, cut at ``limit``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_config(cache_dir: str, device: str) -> ModelConfig:
    """The one configuration the parent and the second process share (the same cache key)."""
    from model_manager import ModelConfig

    policy: Literal["cpu", "cuda"] = "cuda" if device == "cuda" else "cpu"
    return ModelConfig(cache_dir=Path(cache_dir), device=policy, auto_time_budget_s=AUTO_BUDGET_S)


def check_servable(strategy: str, device: str) -> None:
    """StrategyUnavailableError for ``onnx`` on CUDA without onnxruntime-gpu (it would run on the CPU)."""
    import onnxruntime

    from model_manager import StrategyUnavailableError

    if (
        strategy == "onnx"
        and device == "cuda"
        and "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
    ):
        raise StrategyUnavailableError(
            "onnx on CUDA needs onnxruntime-gpu's CUDAExecutionProvider; this onnxruntime offers "
            + ", ".join(onnxruntime.get_available_providers())
        )


def to_numpy(output: Any) -> np.ndarray:
    """A runner's output (a torch tensor on any device, any float dtype) as float32 numpy."""
    return np.asarray(output.float().cpu().numpy(), dtype=np.float32)


@dataclass
class Context:
    """What every row of one model shares: manager, inputs, eager FP32's output and timing."""

    manager: Any
    model_type: str
    name: str
    inputs: list[torch.Tensor]
    iterations: int
    cuda: bool
    reference: np.ndarray | None = None
    base: Any = None


async def serve_row(ctx: Context, strategy: str) -> Row:
    """Load ``strategy`` through the manager, time it and compare it with eager FP32 (never raises)."""
    from model_manager import BackendUnavailableError, StrategyUnavailableError

    row = Row(f"{ctx.model_type}/{ctx.name}", strategy)
    try:
        check_servable(strategy, "cuda" if ctx.cuda else "cpu")
        started = time.perf_counter()
        runner = await ctx.manager.load_optimized_model(ctx.model_type, ctx.name, strategy)
        row.load_s = time.perf_counter() - started
        describe(row, runner.info)
        measure(ctx, row, runner)
        judge(row)
    except (StrategyUnavailableError, BackendUnavailableError) as exc:
        row.status, row.notes = "skipped", [str(exc)]
    except Exception as exc:
        row.status, row.notes = "error", [_short(exc)]
        row.problem = f"{strategy} raised"
    return row


def describe(row: Row, info: Any) -> None:
    """Copy what the runner says about itself into the row."""
    row.served, row.precision = info.strategy, info.precision
    row.cache_hit, row.notes = info.cache_hit, list(info.notes)


def measure(ctx: Context, row: Row, runner: Any) -> None:
    """Time the runner with the one harness and its output's PSNR against eager FP32."""
    from model_manager.optim.benchmark import benchmark
    from model_manager.optim.quality import compare

    output = to_numpy(runner(*ctx.inputs))
    result = benchmark(
        lambda: runner(*ctx.inputs), label=row.strategy, iterations=ctx.iterations, cuda=ctx.cuda
    )
    if row.strategy == "none":
        ctx.reference, ctx.base = output, result
    row.median_ms, row.p90_ms = result.median_ms, result.p90_ms
    row.ratio = None if ctx.base is None else result.ratio_to(ctx.base)
    if ctx.reference is not None:
        row.psnr_db = compare(ctx.reference, output, runner.descriptor.output.value_range).psnr_db
        row.min_psnr_db = ctx.manager.config.quality.for_precision(row.precision)


def judge(row: Row) -> None:
    """Set ``row.problem`` where a served row fails a hard expectation."""
    if row.psnr_db is not None and row.min_psnr_db is not None and row.psnr_db < row.min_psnr_db:
        row.problem = f"PSNR {row.psnr_db:.1f} dB below the {row.precision} gate {row.min_psnr_db:.0f} dB"
    elif row.strategy == "auto" and row.served == "none" and not row.notes:
        row.problem = "auto served eager FP32 without a note saying why"


async def model_rows(model_type: str, name: str, cache: str, device: str, args: Any) -> list[Row]:
    """Every strategy of ``device`` for one model, in order (eager FP32 first: the baseline)."""
    from model_manager import ModelManager
    from model_manager.samples import sample_batch

    async with ModelManager(make_config(cache, device)) as manager:
        descriptor = manager.registry.get(model_type, name).descriptor
        batch = sample_batch(descriptor, (args.size, args.size))
        inputs = [torch.from_numpy(x).to(device) for x in batch]
        ctx = Context(manager, model_type, name, inputs, args.iterations, device == "cuda")
        return [await serve_row(ctx, s) for s in STRATEGIES[device]]


def child_load(cache: str, model_type: str, name: str, device: str, size: int) -> dict[str, Any]:
    """In a second process: ``auto`` from the shared cache, timed, and its PSNR against eager FP32."""
    return asyncio.run(_child_load(cache, model_type, name, device, size))


async def _child_load(cache: str, model_type: str, name: str, device: str, size: int) -> dict[str, Any]:
    """The body of :func:`child_load`."""
    from model_manager import ModelManager
    from model_manager.optim.quality import compare
    from model_manager.samples import sample_batch

    async with ModelManager(make_config(cache, device)) as manager:
        started = time.perf_counter()
        served = await manager.load_optimized_model(model_type, name, "auto")
        load_s = time.perf_counter() - started
        eager = await manager.load_optimized_model(model_type, name, "none")
        inputs = [torch.from_numpy(x).to(device) for x in sample_batch(served.descriptor, (size, size))]
        q = compare(to_numpy(eager(*inputs)), to_numpy(served(*inputs)), served.descriptor.output.value_range)
        info = served.info
        return {
            "served": info.strategy,
            "precision": info.precision,
            "cache_hit": info.cache_hit,
            "load_s": load_s,
            "psnr_db": q.psnr_db,
            "min_psnr_db": manager.config.quality.for_precision(info.precision),
            "notes": list(info.notes),
        }


def second_process_row(cache: str, model_type: str, name: str, device: str, size: int) -> Row:
    """The row of the second process loading the cached ``auto`` entry (never raises)."""
    row = Row(f"{model_type}/{name}", SECOND)
    try:
        got = call_in_child("gpu_manager", "child_load", cache, model_type, name, device, size)
    except (ChildFailed, OSError) as exc:
        lines = str(exc).strip().splitlines()  # the child's stderr ends with its exception
        row.status, row.problem = "error", "second process failed"
        row.notes = [lines[-1] if lines else repr(exc)]
        return row
    row.served, row.precision, row.cache_hit = got["served"], got["precision"], got["cache_hit"]
    row.load_s, row.psnr_db, row.min_psnr_db = got["load_s"], got["psnr_db"], got["min_psnr_db"]
    row.notes = got["notes"]
    judge(row)
    if row.cache_hit is not True:
        row.problem = f"not a cache hit (cache_hit={row.cache_hit})"
    return row


def run_model(model_type: str, name: str, cache: str, device: str, args: Any) -> list[Row]:
    """One model's rows, then the second process's (never raises)."""
    try:
        rows = asyncio.run(model_rows(model_type, name, cache, device, args))
    except Exception as exc:  # the manager itself or the sample inputs failed: one row says so
        return [Row(f"{model_type}/{name}", "-", "error", notes=[_short(exc)], problem="manager failed")]
    if any(r.strategy == "auto" and r.status != "ok" for r in rows):  # its failure is already a row
        return [*rows, Row(f"{model_type}/{name}", SECOND, "skipped", notes=["auto did not load here"])]
    return [*rows, second_process_row(cache, model_type, name, device, args.size)]


def header_line(device: str) -> str:
    """The machine, torch, TensorRT and ONNX Runtime's providers, in one line."""
    import importlib.util

    import onnxruntime

    where = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke run)"
    trt = importlib.util.find_spec("tensorrt") is not None
    providers = ", ".join(onnxruntime.get_available_providers())
    return (
        f"{where}, torch {torch.__version__}, tensorrt installed: {trt}, onnxruntime providers: {providers}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="input height and width of the timed calls")
    ap.add_argument("--iterations", type=int, default=30, help="timed calls per row")
    ap.add_argument("--models", nargs="+", default=[t for t, _ in MODELS], help="model types")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke run")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure every model's rows, print the table (and write the JSON); 1 if an expectation failed."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: nothing to measure")
        return 0
    from model_manager.optim.benchmark import format_table, machine_info

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_manager_") as cache:  # shared with the 2nd process
        rows = [r for t, n in MODELS if t in args.models for r in run_model(t, n, cache, args.device, args)]
    failed = [f"{r.model} {r.strategy}: {r.problem}" for r in rows if r.problem]
    if args.json is not None:
        out: dict[str, Any] = {"machine": machine_info(), "args": vars(args) | {"json": str(args.json)}}
        out |= {"rows": [asdict(r) for r in rows], "failed": failed}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"manager path on {header_line(args.device)}; {time.perf_counter() - started:.0f} s")
    print(format_table([r.cells() for r in rows], HEADER))
    print("\n".join(f"FAILED {f}" for f in failed) or "every hard expectation held")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
