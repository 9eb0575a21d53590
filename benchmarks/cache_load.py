"""Build once, then load from the cache in fresh processes: build time vs restart load time.

For each embedded default model: a first process builds ``auto`` into an empty cache; then fresh
processes (as a restarted application would) load the same key. Reports the build seconds, the
in-process ``load_optimized_model`` time of the restarted processes (median / p90), the whole
process time (interpreter, imports, load, one inference), and the ratio of build to load.

    python benchmarks/cache_load.py [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from model_manager.optim.benchmark import benchmark, format_table, machine_info, percentile

MODELS = (("super_resolution", "default"), ("style_transfer", "default"), ("interpolation", "default"))

_CHILD = textwrap.dedent("""
    import asyncio, json, sys, time
    from model_manager import ModelConfig, ModelManager
    from model_manager.samples import warmup_inputs

    async def main(cache, model_type, name):
        async with ModelManager(ModelConfig(cache_dir=cache)) as m:
            t0 = time.perf_counter()
            r = await m.load_optimized_model(model_type, name, "auto")
            load_s = time.perf_counter() - t0
            await r.infer(*warmup_inputs(r.descriptor))
            print(json.dumps({"load_s": load_s, "hit": r.info.cache_hit, "strategy": r.info.strategy,
                              "build_s": r.info.build_seconds, "speedup": r.info.speedup}))

    asyncio.run(main(*sys.argv[1:4]))
""")


def _child(cache: Path, model_type: str, name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(cache), model_type, name],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(model_type: str, name: str, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        first = _child(cache, model_type, name)
        assert first["hit"] is False
        loads: list[float] = []

        def restart() -> None:
            info = _child(cache, model_type, name)
            assert info["hit"] is True
            loads.append(info["load_s"])

        process = benchmark(restart, label=f"{model_type}/{name} restart", warmup=0, iterations=runs)
    return {
        "model": f"{model_type}/{name}",
        "strategy": first["strategy"],
        "speedup": first["speedup"],
        "build_s": first["build_s"],
        "first_load_s": first["load_s"],
        "load_median_s": percentile(loads, 50),
        "load_p90_s": percentile(loads, 90),
        "process_median_s": process.median_ms / 1000,
        "process_p90_s": process.p90_ms / 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="restarted processes per model")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    rows, data = [], {"machine": machine_info(), "models": []}
    for model_type, name in MODELS:
        print(f"... {model_type}/{name}", file=sys.stderr, flush=True)
        r = measure(model_type, name, args.runs)
        data["models"].append(r)
        rows.append(
            [
                r["model"],
                r["strategy"],
                f"{r['build_s']:.1f}",
                f"{r['first_load_s']:.1f}",
                f"{r['load_median_s'] * 1000:.0f} / {r['load_p90_s'] * 1000:.0f}",
                f"{r['process_median_s']:.2f} / {r['process_p90_s']:.2f}",
                f"{r['first_load_s'] / r['load_median_s']:.0f}x",
            ]
        )
    print(f"machine: {data['machine']}\n")
    print(
        format_table(
            rows,
            [
                "model",
                "auto chose",
                "build s (manifest)",
                "first load s",
                "restart load ms (median / p90)",
                "restart process s (median / p90)",
                "first load / restart load",
            ],
        )
    )
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
