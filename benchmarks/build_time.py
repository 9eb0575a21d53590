"""First ``auto`` build of each embedded default: wall time, FP32 exports, and what the CLI said.

Each model is built in a fresh process into an empty cache through the public API (as an
application's first start would). The number of FP32 ONNX exports is counted from outside the
library (a ``sitecustomize`` that wraps ``torch.onnx.export`` in every process, the build process
included), so the same script measures any version of the code. ``--cli`` also runs
``model-manager optimize TYPE default`` with stderr captured and reports how many progress lines
it printed and the longest silence between two lines.

    python benchmarks/build_time.py [--json out.json] [--cli] [--models super_resolution,...]
        [--baseline OLD_CHECKOUT --rounds 3]

``--baseline`` times another checkout of the project side by side (its folder is put first on
``PYTHONPATH`` of its child processes): rounds alternate old and new for each model, and the table
gives the median first-load seconds of each with their range and the ratio new / old.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from model_manager.optim.benchmark import format_table, machine_info

MODELS = ("super_resolution", "style_transfer", "interpolation")

_SITECUSTOMIZE = textwrap.dedent("""
    import os

    if os.environ.get("MM_EXPORT_COUNTER"):  # every process of the run: the build process too
        import torch.onnx

        _original = torch.onnx.export

        def _counting_export(*args, **kwargs):
            with open(os.environ["MM_EXPORT_COUNTER"], "a") as f:
                f.write("export\\n")
            return _original(*args, **kwargs)

        torch.onnx.export = _counting_export
""")

_CHILD = textwrap.dedent("""
    import asyncio, json, sys, time
    from model_manager import ModelConfig, ModelManager

    async def main(cache, model_type):
        async with ModelManager(ModelConfig(cache_dir=cache)) as m:
            t0 = time.perf_counter()
            r = await m.load_optimized_model(model_type, "default", "auto")
            wall = time.perf_counter() - t0
            print(json.dumps({"wall_s": wall, "strategy": r.info.strategy, "hit": r.info.cache_hit,
                              "build_s": r.info.build_seconds, "speedup": r.info.speedup}))

    asyncio.run(main(*sys.argv[1:3]))
""")


def _env(work: Path, code: Path | None = None) -> dict[str, str]:
    (work / "site").mkdir(exist_ok=True)
    (work / "site" / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = dict(os.environ)
    first = [str(code)] if code is not None else []
    paths = [*first, str(work / "site"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["MM_EXPORT_COUNTER"] = str(work / "exports.txt")
    return env


def _exports(work: Path) -> int:
    path = work / "exports.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def measure_api(model_type: str, code: Path | None = None) -> dict[str, Any]:
    """One first build through ``load_optimized_model`` in a fresh process (of ``code``'s version)."""
    with tempfile.TemporaryDirectory(prefix="mm-build-time-") as tmp:
        work = Path(tmp)
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(work / "cache"), model_type],
            capture_output=True,
            text=True,
            check=True,
            env=_env(work, code),
            cwd=work,  # not this checkout: the child imports model_manager from PYTHONPATH or site-packages
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["hit"] is False, "the cache was not empty"
        result["fp32_exports"] = _exports(work)
    return result


def measure_cli(model_type: str) -> dict[str, Any]:
    """``model-manager optimize TYPE default`` into an empty cache: progress lines and longest silence."""
    with tempfile.TemporaryDirectory(prefix="mm-build-time-") as tmp:
        work = Path(tmp)
        env = _env(work)
        env["MODEL_MANAGER_CACHE_DIR"] = str(work / "cache")
        cli = Path(sys.executable).with_name("model-manager")
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(cli), "optimize", model_type, "default"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=work,
        )
        assert proc.stderr is not None
        stamps = [started]
        lines = 0
        for _line in proc.stderr:
            stamps.append(time.perf_counter())
            lines += 1
        proc.wait()
        stamps.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {"cli_s": stamps[-1] - started, "stderr_lines": lines, "longest_silence_s": max(gaps)}


def side_by_side(models: list[str], baseline: Path, rounds: int) -> dict[str, Any]:
    """Rounds of (old, new) first builds per model, alternating; medians, ranges and ratios."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"old": [], "new": []} for m in models}
    for r in range(rounds):
        for model_type in models:
            for side, code in (("old", baseline), ("new", None)):
                print(f"... round {r + 1}/{rounds} {model_type} {side}", file=sys.stderr, flush=True)
                runs[model_type][side].append(measure_api(model_type, code))
    rows, summary = [], []
    for model_type, sides in runs.items():
        old = [x["wall_s"] for x in sides["old"]]
        new = [x["wall_s"] for x in sides["new"]]
        ratio = statistics.median(new) / statistics.median(old)
        summary.append({"model": f"{model_type}/default", "old_s": old, "new_s": new, "ratio": ratio})
        rows.append(
            [
                f"{model_type}/default",
                f"{statistics.median(old):.1f} ({min(old):.1f}-{max(old):.1f})",
                f"{statistics.median(new):.1f} ({min(new):.1f}-{max(new):.1f})",
                f"{ratio:.2f}",
                f"{sides['old'][0]['fp32_exports']} -> {sides['new'][0]['fp32_exports']}",
                f"{', '.join(sorted({x['strategy'] for x in sides['old']}))} -> "
                f"{', '.join(sorted({x['strategy'] for x in sides['new']}))}",
            ]
        )
    header = ["model", "old first load s, median (range)", "new", "new / old", "FP32 exports", "auto chose"]
    print(format_table(rows, header))
    return {"rounds": rounds, "baseline": str(baseline), "runs": runs, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--cli", action="store_true", help="also time the CLI and its progress output")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model types")
    parser.add_argument("--baseline", type=Path, help="an older checkout to time side by side")
    parser.add_argument("--rounds", type=int, default=3, help="rounds with --baseline")
    args = parser.parse_args(argv)
    if args.baseline is not None:
        print(f"machine: {machine_info()}\n")
        result = {
            "machine": machine_info(),
            **side_by_side(args.models.split(","), args.baseline, args.rounds),
        }
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    data: dict[str, Any] = {"machine": machine_info(), "models": []}
    rows = []
    for model_type in args.models.split(","):
        print(f"... {model_type}/default", file=sys.stderr, flush=True)
        r = {"model": f"{model_type}/default", **measure_api(model_type)}
        if args.cli:
            r.update(measure_cli(model_type))
        data["models"].append(r)
        row = [r["model"], r["strategy"], f"{r['wall_s']:.1f}", f"{r['build_s']:.1f}", str(r["fp32_exports"])]
        if args.cli:
            row += [f"{r['cli_s']:.1f}", str(r["stderr_lines"]), f"{r['longest_silence_s']:.1f}"]
        rows.append(row)
    header = ["model", "auto chose", "first load s", "build s (manifest)", "FP32 exports"]
    if args.cli:
        header += ["CLI s", "stderr lines", "longest silence s"]
    print(f"machine: {data['machine']}\n")
    print(format_table(rows, header))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
