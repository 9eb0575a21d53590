"""Ray Serve on loopback: p50 / p99 latency and requests/s of super resolution, 1 vs 2 replicas.

The driver builds the artifact once (a local ModelManager on the benchmark's cache, so the
replicas load it: cache hit), starts Ray (``--cpus``, default 2) and Serve on 127.0.0.1, deploys
super resolution ``default`` with 1 replica, then 2. For each, a second process (this file with
``--client``) sends a bounded load: ``--requests`` POSTs of a 256x256 PNG crop of a shipped photo
from ``--concurrency`` urllib threads, stopping at ``--time-limit`` seconds, and reports the
latency percentiles, requests/s and the server-side inference time (``X-Inference-Ms``).

Fairness: each replica has ``num_threads=1`` (torch and the engine), ``num_cpus=1`` and
``max_concurrent_inferences=1``, so one replica computes on one core and two replicas on two;
``max_ongoing_requests=2`` (``--max-ongoing``) keeps the next request waiting at the replica
(with 1, Serve's router rejects and retries with backoff, and the replica idles in between).
The client, Serve's proxy and the controller share the same cores (on a 2-core machine they take
some of it from the replicas); ``GET /info`` p50 (no model call) shows the cost of Serve's HTTP
path alone, and the 1-minute load average before / after each run shows what else the machine
was doing.

    python benchmarks/ray_serve.py [--optimization auto] [--requests 200] [--concurrency 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from model_manager.distributed.serve import run_serve
from model_manager.distributed.serve_options import ServeOptions
from model_manager.manager import ModelManager
from model_manager.optim.benchmark import format_table, machine_info, percentile
from model_manager.samples import load_sample

MODEL = ("super_resolution", "default")


# -- the client (a second process) ---------------------------------------------------------------------
def _payload(size: int) -> bytes:
    """A size x size PNG crop from the middle of a shipped photo."""
    from PIL import Image

    photo = load_sample("astronaut")
    top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    buffer = io.BytesIO()
    Image.fromarray(photo[top : top + size, left : left + size]).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(url: str, body: bytes) -> tuple[int, float, float | None]:
    """One POST: status, seconds, the server's inference ms (None on an error)."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            infer = resp.headers.get("X-Inference-Ms")
            return resp.status, time.perf_counter() - started, float(infer) if infer else None
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, time.perf_counter() - started, None


def client(url: str, requests: int, concurrency: int, time_limit: float, size: int) -> dict[str, Any]:
    """At most ``requests`` POSTs from ``concurrency`` threads, none started after ``time_limit`` s."""
    body = _payload(size)
    lock = threading.Lock()
    issued = 0
    results: list[tuple[int, float, float | None]] = []
    started = time.perf_counter()
    deadline = started + time_limit

    def worker() -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= requests or time.perf_counter() >= deadline:
                    return
                issued += 1
            result = _post(url, body)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if r[0] == 200]
    latencies = [r[1] * 1000 for r in ok] or [float("nan")]
    inference = [r[2] for r in ok if r[2] is not None] or [float("nan")]
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "wall_s": wall,
        "requests_per_s": len(ok) / wall,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "inference_p50_ms": percentile(inference, 50),
    }


def _info_ms(url: str, count: int = 20) -> float:
    """p50 of sequential ``GET /info`` (no model call): Serve's HTTP path on its own."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        urllib.request.urlopen(f"{url}/info", timeout=30).read()
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50)


def _run_client(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The client in a second process (this file with ``--client``); its JSON result."""
    command = [sys.executable, __file__, "--client", url, "--requests", str(args.requests)]
    command += ["--concurrency", str(args.concurrency), "--time-limit", str(args.time_limit)]
    command += ["--size", str(args.size)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=args.time_limit + 120)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the driver --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build(options: ServeOptions) -> dict[str, Any]:
    """Build (or load) the artifact in this process with the replicas' config; its info."""

    async def run() -> dict[str, Any]:
        started = time.perf_counter()
        async with ModelManager(options.model_config()) as manager:
            runner = await manager.load_optimized_model(
                options.model_type, options.name, options.optimization
            )
            info = runner.info.to_dict()
        info["driver_load_s"] = time.perf_counter() - started
        return info

    return asyncio.run(run())


def measure(args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    """Build once, then 1 and 2 replicas under the client's bounded load."""
    import ray
    from ray import serve

    options = ServeOptions(
        *MODEL,
        optimization=args.optimization,
        cache_dir=cache_dir,
        device="cpu",
        num_threads=1,
        num_cpus=1,
        max_ongoing_requests=args.max_ongoing,
        max_concurrent_inferences=1,
        route_prefix="/sr",
    )
    print(f"... building {options.optimization} (once, in the driver)", file=sys.stderr, flush=True)
    build = _build(options)
    port = _free_port()
    url = f"http://127.0.0.1:{port}{options.route}"
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    runs: list[dict[str, Any]] = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for replicas in args.replicas:
            print(f"... {replicas} replica(s)", file=sys.stderr, flush=True)
            started = time.perf_counter()
            run_serve(options.with_replicas(replicas))
            deploy_s = time.perf_counter() - started
            info = json.loads(urllib.request.urlopen(f"{url}/info", timeout=30).read())["runner"]
            body = _payload(args.size)
            for _ in range(2 * replicas):  # each replica warmed itself; this warms the proxy path
                _post(url, body)
            info_ms = _info_ms(url)
            load_before = os.getloadavg()[0]
            result = _run_client(url, args)
            runs.append(
                {
                    "replicas": replicas,
                    "deploy_s": deploy_s,
                    "strategy": info["strategy"],
                    "cache_hit": info["cache_hit"],
                    "info_p50_ms": info_ms,
                    "loadavg_1min_before": load_before,
                    "loadavg_1min_after": os.getloadavg()[0],
                    **result,
                }
            )
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"build": build, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimization", default="auto")
    parser.add_argument("--requests", type=int, default=200, help="requests per replica count (at most)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds of load per replica count")
    parser.add_argument("--size", type=int, default=256, help="side of the square input image")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-ongoing", type=int, default=2, help="max_ongoing_requests per replica")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs Ray may schedule (one per replica)")
    parser.add_argument("--cache-dir", type=Path, help="artifact cache (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        print(json.dumps(client(args.client, args.requests, args.concurrency, args.time_limit, args.size)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "machine": machine_info(),
            "model": "/".join(MODEL),
            "size": args.size,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "time_limit_s": args.time_limit,
            "per_replica": {
                "num_threads": 1,
                "num_cpus": 1,
                "max_ongoing_requests": args.max_ongoing,
                "max_concurrent_inferences": 1,
            },
            **measure(args, args.cache_dir or Path(tmp)),
        }
    rows = [
        [
            str(r["replicas"]),
            f"{r['strategy']} (hit {r['cache_hit']})",
            f"{r['ok']} / {r['requests']}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['requests_per_s']:.1f}",
            f"{r['inference_p50_ms']:.1f}",
            f"{r['info_p50_ms']:.1f}",
            f"{r['loadavg_1min_before']:.1f} / {r['loadavg_1min_after']:.1f}",
        ]
        for r in data["runs"]
    ]
    print(f"machine: {data['machine']}")
    b = data["build"]
    print(f"build: {b['strategy']} in {b['driver_load_s']:.1f} s (speedup {b['speedup']}) in the driver\n")
    header = ["replicas", "strategy", "ok / sent", "p50 ms", "p99 ms", "req/s", "server inference p50 ms"]
    header += ["GET /info p50 ms", "load avg before / after"]
    print(format_table(rows, header))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
