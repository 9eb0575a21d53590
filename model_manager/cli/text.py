"""Commands' results (JSON-ready data) as text for a person; ``--json`` prints the data instead.

Pure functions of the data: nothing heavy is imported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def format_result(command: str, result: Any) -> str:
    """The text of ``command``'s result (``cache ls`` and the other cache actions by their full name)."""
    formatter = _FORMATTERS.get(command)
    return formatter(result) if formatter is not None else str(result)


def strategy_text(requested: str | None, chosen: str | None) -> str:
    """``auto -> openvino-int8`` when the requested strategy served another, else the one name."""
    if requested and chosen and chosen != requested:
        return f"{requested} -> {chosen}"
    return requested or chosen or "-"


def table(rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + str(row[-1]) for row in rows
    )


# -- list, samples, inspect ---------------------------------------------------------------------
def format_models(rows: list[dict[str, Any]]) -> str:
    lines: list[Sequence[Any]] = [
        ("TYPE", "NAME", "ARCHITECTURE", "PARAMS", "IN", "RANGE", "SCALE", "SIZE", "WEIGHTS")
    ]
    for r in rows:
        d = r["descriptor"]
        lo, hi = d["inputs"][0]["value_range"]
        lines.append(
            (
                r["model_type"],
                r["name"] + (" (default)" if r["default"] else ""),
                r["architecture"],
                "-" if r["parameters"] is None else f"{r['parameters'] / 1e6:.2f}M",
                "+".join(s["name"] for s in d["inputs"]),
                f"{lo:g}..{hi:g}",
                f"x{d['scale']}",
                f">={d['size_min']}, x{d['size_multiple']}",
                r["weights"],
            )
        )
    return table(lines)


def format_samples(rows: list[dict[str, str]]) -> str:
    return "\n".join(f"{r['name']:<10} {r['path']}" for r in rows)


def format_inspect(r: dict[str, Any]) -> str:
    d = r["descriptor"]
    return (
        f"{r['path']}: {r['architecture']}, {r['parameters']:,} parameters, "
        f"scale x{d['scale']}, hyperparameters {d['hyperparameters']}"
    )


# -- run, optimize --------------------------------------------------------------------------------
def format_run(r: dict[str, Any]) -> str:
    info = r["runner"]
    used = (
        f"with {info['model_type']}/{info['name']} [{info['strategy']}, {info['backend']}, {info['device']}]"
    )
    if "frames_out" in r:
        return f"wrote {r['frames_out']} frames ({r['frames_in']} in) to {r['output']} {used}"
    return f"wrote {r['output']} ({r['output_size'][1]}x{r['output_size'][0]}) {used}"


def format_optimize(r: dict[str, Any]) -> str:
    decision = r["decision"]
    cache = {True: "cache hit", False: "built and stored", None: "not cached"}[r["cache_hit"]]
    served = strategy_text(decision.get("requested"), r["strategy"])
    return (
        f"{r['model_type']}/{r['name']}: {served} ({r['backend']}, {r['precision']}), {cache}\n"
        f"{decision.get('reason', 'asked for it')}\n{int8_text(decision, r['strategy'])}"
        f"{r['artifact_path'] or ''}"
    ).rstrip()


def int8_text(decision: dict[str, Any], served: str) -> str:
    """The served INT8 model's float layers and what the search measured (empty for others)."""
    chosen = next((c for c in decision.get("candidates", []) if c["name"] == served), None)
    d = (chosen or {}).get("details") or {}
    if "float_layers" not in d:
        return ""
    floats = d["float_layers"]
    shown = ", ".join(floats[:4]) + (", ..." if len(floats) > 4 else "")
    return (
        f"INT8: {len(floats)} of {d['quantized_layers']} layers in float{f' ({shown})' if floats else ''}, "
        f"{100 * d['int8_mac_share']:.1f}% of MACs in INT8; search {d['psnr_all_int8_db']:.1f} -> "
        f"{d['search_psnr_db']:.1f} dB in {d['search_trials']} trials ({d['search_seconds']:.1f} s)\n"
        + _extension_text(d.get("engine_extension"))
    )


def _extension_text(ext: dict[str, Any] | None) -> str:
    """What the served engine added to the decision for its own INT8 model (empty when nothing)."""
    if not ext or not ext.get("added"):
        return ""
    return (
        f"INT8: {ext['engine']} kept {len(ext['added'])} more layer(s) in float for its own kernels "
        f"({ext['psnr_decision_db']:.1f} -> {ext['psnr_db']:.1f} dB in {ext['trials']} trials)\n"
    )


# -- bench ----------------------------------------------------------------------------------------
BENCH_HEADER = (
    "strategy", "engine", "median ms", "p90 ms", "vs eager FP32", "size on disk", "PSNR dB", "gate",
    "build s", "",
)  # fmt: skip


def bench_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per candidate: the numbers, the gate verdict, and which one ``auto`` serves."""
    decision = result["decision"]
    out = []
    for c in decision["candidates"]:
        served = "<- served" if c["name"] == decision["chosen"] else ""
        if c["error"]:
            out.append(
                [c["name"], c["backend"], "-", "-", "-", "-", "-", f"error: {c['error'][:50]}", "-", ""]
            )
            continue
        size = "-" if c.get("size_bytes") is None else f"{c['size_bytes'] / 1e6:.2f} MB"
        gate = "pass" if c["passed"] else f"FAIL (<{c['min_psnr_db']:.0f})"
        out.append(
            [
                c["name"],
                c["backend"],
                f"{c['median_ms']:.2f}",
                f"{c['p90_ms']:.2f}",
                f"{c['speedup']:.2f}x",
                size,
                f"{c['psnr_db']:.1f}",
                gate,
                f"{c['build_seconds'] or 0:.1f}",
                served,
            ]
        )
    return out


def format_bench(result: dict[str, Any]) -> str:
    from ..optim.benchmark import format_table

    shape = " + ".join("x".join(str(d) for d in s) for s in result["input"])
    m = result["machine"]
    head = (
        f"{result['model']} [{result['optimization']}] input {shape} "
        f"on {m.get('cpu')} ({m.get('torch_threads')} threads)"
    )
    tail = f"served: {result['decision']['chosen']}: {result['decision']['reason']}"
    lines = [head, format_table(bench_rows(result), BENCH_HEADER), tail]
    lines += [f"{key}: {result[key]}" for key in ("compare", "plot") if key in result]
    return "\n".join(lines)


# -- demo -----------------------------------------------------------------------------------------
DECISION_SPEEDUP = "speedup (build-time decision, in the build process)"
RUN_SPEEDUP = "speedup (this run, interleaved)"


def format_demo(r: dict[str, Any]) -> str:
    """The demo's one table."""
    e, o = r["eager_ms"], r["optimized_ms"]
    cache = "hit" if r["cache_hit"] else ("built and stored" if r["cache_hit"] is False else "not cached")
    decided = r.get("decision_speedup")
    rows = [
        ("model", r["model"]),
        ("strategy", f"{r['strategy']} ({r['backend']})"),
        ("why", r["reason"]),
        ("eager FP32 (median / p90)", f"{e['median_ms']:.1f} / {e['p90_ms']:.1f} ms"),
        ("optimized (median / p90)", f"{o['median_ms']:.1f} / {o['p90_ms']:.1f} ms"),
        (RUN_SPEEDUP, f"{r['speedup']:.2f}x"),
        (DECISION_SPEEDUP, "- (not measured at build time)" if decided is None else f"{decided:.2f}x"),
        ("PSNR vs FP32", f"{r['psnr_db']:.1f} dB (max abs error {r['max_abs_error']:.2g})"),
        ("clip", f"{r['frames_in']} frames in, {r['frames_out']} out, {r['fps']:.1f} frames/s"),
        ("cache", f"{cache}, load {r['load_seconds']:.2f} s"),
        ("cache path", str(r["cache_path"] or "-")),
        ("input", r["input"]),
        ("output", r["output"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# -- cache ----------------------------------------------------------------------------------------
def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    minutes = (time.time() - ts) / 60
    return f"{minutes:.0f} min ago" if minutes < 120 else f"{minutes / 60:.0f} h ago"


def _listing(result: dict[str, Any], rows: list[str]) -> str:
    return "\n".join([f"cache: {result['cache_dir']}", *(rows or ["(empty)"])])


def format_cache_ls(result: dict[str, Any]) -> str:
    return _listing(
        result,
        [
            f"{e['entry']}  {strategy_text(e['strategy'], e['chosen'])}  {e['backend'] or '-'}  "
            f"{e['size_bytes'] / 1e6:.1f} MB  last used {_ago(e['last_used'])}"
            + (f"  PROBLEM: {e['problem']}" if e["problem"] else "")
            for e in result["entries"]
        ],
    )


def format_cache_verify(result: dict[str, Any]) -> str:
    return _listing(
        result,
        [
            f"{'ok ' if r['ok'] else 'BAD'} {r['entry']}"
            + ("" if r["ok"] else f": {'; '.join(r['problems'])}")
            for r in result["entries"]
        ],
    )


def format_cache_prune(result: dict[str, Any]) -> str:
    freed = sum(r["size_bytes"] for r in result["removed"])
    return f"cache: {result['cache_dir']}\nremoved {len(result['removed'])} entries, {freed / 1e6:.1f} MB"


def format_cache_clear(result: dict[str, Any]) -> str:
    if result.get("cancelled"):
        return f"cache: {result['cache_dir']}\nnothing deleted"
    return f"cache: {result['cache_dir']}\ncleared ({result['cleared']} folders)"


_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "list": format_models,
    "samples": format_samples,
    "inspect": format_inspect,
    "run": format_run,
    "optimize": format_optimize,
    "bench": format_bench,
    "demo": format_demo,
    "cache ls": format_cache_ls,
    "cache verify": format_cache_verify,
    "cache prune": format_cache_prune,
    "cache clear": format_cache_clear,
}
