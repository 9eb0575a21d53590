"""INT8 with and without the float-layer search, per engine, on every architecture; fresh processes.

For each (model, size), in a fresh child process: build every CPU candidate as ``auto`` does
(``build_plan``, everything timed together with eager FP32 by the one harness, failed candidates
timed too), once with the search off (``int8_max_trials=0``: every quantizable layer in INT8) and
once with it on. Reports per INT8 engine: PSNR on the held-out crops (and the recheck near the
gate), speedup against eager FP32 in the same run, median / p90, float layers, share of MACs in
INT8, the search's trials and seconds, and which candidate ``auto`` serves.

``--external`` also loads each INT8 strategy by name (searched) and checks it on photos other
packages ship (matplotlib's ``grace_hopper.jpg``, scikit-learn's ``china.jpg`` and
``flower.jpg``): never used for calibration, search or gates.

``--hand`` builds ``openvino-int8`` with the hand-written layer exclusions the project used before
the search (``HAND_RECIPES`` below) for comparison.

    python benchmarks/mixed_precision.py --cases defaults --sizes 128 256 --json out.json
    python benchmarks/mixed_precision.py --cases builtins unseen --sizes 128
    python benchmarks/mixed_precision.py --table out.json   # the README's table from a results file
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from child import ChildFailed, call_in_child

HERE = Path(__file__).resolve().parent
CASES = {
    "defaults": [
        ("super_resolution", "default"),
        ("style_transfer", "default"),
        ("interpolation", "default"),
    ],
    "builtins": [
        ("super_resolution", "realesr-animevideov3"),
        ("super_resolution", "realesr-general-x4v3"),
        ("super_resolution", "RealESRGAN_x4plus"),
        ("super_resolution", "RealESRGAN_x2plus"),
        ("style_transfer", "candy"),
        ("interpolation", "rife-4.25"),
        ("interpolation", "rife-4.26"),
        ("interpolation", "rife-4.26-heavy"),
    ],
    "unseen": [("super_resolution", "unet-sr-x2")],
}
INT8 = ("int8-static", "int8-static-qop", "int8-torch", "openvino-int8")
HEADER = (
    "| model | size | INT8 | engine | PSNR dB (held-out) | recheck | gate | speedup | median / p90 ms | "
    "float layers | MACs in INT8 | search trials / s | external photos dB |"
)
HAND_RECIPES = {  # what ov_ir.OV_INT8_RECIPES held before the search (issue 16), for --hand
    "ESPCN": {"ignored": (r"/conv1/.*",)},
    "TransformerNet": {
        "preset": "mixed",
        "activation_ranges": "mean_quantile",
        "ignored": (r"/conv1/.*", r"/deconv3/.*"),
    },
}
EXTERNAL = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)


def load(model_type: str, name: str) -> Any:
    """The module and descriptor: trained weights where shipped, else the architecture's seeded init."""
    from model_manager.models import all_architectures
    from model_manager.registry import ModelRegistry

    if name == "unet-sr-x2":
        sys.path.insert(0, str(HERE))
        import unseen_model

        from model_manager.entry import LoadedModel

        return LoadedModel(unseen_model.factory(), unseen_model.descriptor(), "UNetSR", {})
    entry = ModelRegistry.with_builtins().get(model_type, name)
    if entry.weights.kind == "required":
        return all_architectures()[entry.architecture].create(entry.hyperparameters, seed=0)
    return entry.load()


def run_case(
    model_type: str, name: str, size: int, trials: int, external: bool, hand: bool
) -> dict[str, Any]:
    """One (model, size, search on/off) in this process."""
    import torch

    from model_manager import Optimization
    from model_manager.optim.build_plan import build_plan
    from model_manager.optim.candidates.registry import available_candidates
    from model_manager.optim.hardware import probe_hardware
    from model_manager.optim.planner import plan
    from model_manager.optim.settings import BuildSettings

    torch.set_num_threads(2)
    loaded = load(model_type, name)
    available = available_candidates("cpu")
    the_plan = plan(Optimization.AUTO, probe_hardware(), available, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        settings = BuildSettings(
            time_budget_s=3.0,
            opt_size=(size, size),
            num_threads=2,
            time_failed=True,
            int8_max_trials=trials,
            weights_sha256=f"{model_type}/{name}",  # content-addresses the intermediates within this run
            intermediates_root=tmp,
        )
        out = build_plan(loaded.module, loaded.descriptor, the_plan, Path(tmp) / "auto", settings)
        row = {
            "model": f"{model_type}/{name}",
            "architecture": loaded.descriptor.architecture,
            "size": size,
            "search": trials > 0,
            "decision": out.decision,
            "machine": out.benchmark["machine"],
            "build": {k: out.build[k] for k in ("seconds", "fp32_exports")},
        }
        if external:
            row["external"] = {
                s: _external(loaded, the_plan, settings, s, Path(tmp)) for s in INT8 if s in available
            }
        if hand and loaded.descriptor.architecture in HAND_RECIPES:
            row["hand"] = _hand(loaded, settings, Path(tmp))
    return row


def _open_built(loaded: Any, settings: Any, strategy: str, root: Path) -> Any:
    """Build ``strategy`` alone (reusing the run's intermediates) and open it."""
    from model_manager import Optimization
    from model_manager.optim.build_plan import build_plan
    from model_manager.optim.candidates.base import OpenRequest
    from model_manager.optim.candidates.registry import available_candidates, get_candidate
    from model_manager.optim.hardware import probe_hardware
    from model_manager.optim.planner import plan
    from model_manager.runners import RunnerInfo

    folder = root / strategy
    p = plan(Optimization(strategy), probe_hardware(), available_candidates("cpu"), "cpu")
    out = build_plan(loaded.module, loaded.descriptor, p, folder, settings)
    cand = get_candidate(strategy)
    info = RunnerInfo(loaded.descriptor.model_type, strategy, strategy, cand.backend, "cpu", "int8")
    req = OpenRequest(folder, out.files, loaded.module, loaded.descriptor, info, "cpu", 2)
    return cand.open(req), out


def _external(loaded: Any, _plan: Any, settings: Any, strategy: str, root: Path) -> dict[str, Any]:
    """PSNR of the served ``strategy`` against eager FP32 on photos other packages ship."""
    import torch

    from model_manager.optim.quality import psnr

    try:
        runner, out = _open_built(loaded, settings, strategy, root)
    except Exception as exc:  # a candidate that is refused is reported as such
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    items = external_items(loaded.descriptor, settings.opt_size)
    with torch.no_grad():
        ref = [loaded.module(*(torch.from_numpy(a) for a in item)).numpy() for item in items]
    got = [runner(*item) for item in items]
    runner.close()
    vr = loaded.descriptor.output.value_range
    per_photo = [round(psnr(r, g, vr), 2) for r, g in zip(ref, got)]
    return {
        "psnr_db": round(psnr(np.concatenate(ref), np.concatenate(got), vr), 2),
        "per_photo_db": per_photo,
        "min_photo_db": min(per_photo),
        "gate_psnr_db": out.quality["psnr_db"],
    }


def external_items(descriptor: Any, size: tuple[int, int]) -> list[list[np.ndarray]]:
    """Centre and corner crops of each external photo, as model inputs (frames shifted by 6, 4)."""
    import importlib.util

    from PIL import Image

    from model_manager.images import to_batch
    from model_manager.samples import _to_channels

    items = []
    for package, rel in EXTERNAL:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None, f"{package} is needed for --external"
        img = Image.open(Path(spec.origin).parent / rel).convert("RGB")
        h, w = descriptor.fit_size(*size)
        scale = max((h + 16) / img.height, (w + 16) / img.width, 1.0)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        big = np.asarray(img)
        for top, left in ((big.shape[0] - h - 8) // 2, (big.shape[1] - w - 8) // 2), (0, 0):
            item = []
            for k, spec_ in enumerate(descriptor.inputs):
                if spec_.kind == "scalar":
                    item.append(np.full((1, 1, 1, 1), 0.5, dtype=np.float32))
                    continue
                t, lft = top + 4 * k, left + 6 * k
                crop = np.ascontiguousarray(big[t : t + h, lft : lft + w])
                item.append(to_batch(_to_channels(crop, spec_.channels or 3), spec_.value_range))
            items.append(item)
    return items


def _hand(loaded: Any, settings: Any, root: Path) -> dict[str, Any]:
    """openvino-int8 with the old hand recipe instead of the search's float layers."""
    from model_manager.optim import ov_ir
    from model_manager.optim.candidates import ov
    from model_manager.optim.ov_ir import OvInt8Recipe

    recipe = OvInt8Recipe(**HAND_RECIPES[loaded.descriptor.architecture])
    ov._recipe = lambda _ctx: recipe  # type: ignore[assignment]  # this child process only
    _ = ov_ir
    from dataclasses import replace

    settings = replace(settings, intermediates_root=None)
    try:
        runner, out = _open_built(loaded, settings, "openvino-int8", root / "hand")
    except Exception as exc:  # the hand recipe may fail its gate on the held-out crops
        return {"error": f"{type(exc).__name__}: {str(exc)[:160]}"}
    runner.close()
    return {k: out.decision["candidates"][0].get(k) for k in ("psnr_db", "speedup", "median_ms")}


def _child(args: list[str]) -> dict[str, Any]:
    try:
        return call_in_child("mixed_precision", "run_case", *args)
    except ChildFailed as exc:  # one failed case is reported in the table, the run goes on
        return {"case": args, "error": str(exc)[-2000:]}


def _rows(result: dict[str, Any]) -> list[str]:
    out = []
    for c in result["decision"]["candidates"]:
        if c["name"] not in INT8 and c["name"] != "none":
            continue
        d = c.get("details") or {}
        ext = (result.get("external") or {}).get(c["name"], {})
        mode = "search" if result["search"] else "all INT8"
        gate = "pass" if c["passed"] else "FAIL"
        floats = len(d.get("float_layers", [])) if d else ""
        search = f"{d.get('search_trials', '')} / {d.get('search_seconds', '')}"
        out.append(
            f"| {result['model']} | {result['size']} | {mode} | {c['name']} | {c['psnr_db']} | "
            f"{c.get('rechecked_psnr_db') or ''} | {gate} | {c.get('speedup')} | "
            f"{c.get('median_ms')} / {c.get('p90_ms')} | {floats} | {d.get('int8_mac_share', '')} | "
            f"{search} | {ext.get('psnr_db', ext.get('error', ''))} |"
        )
    return out


README_HEADER = (
    "| model | size | engine | everything INT8: dB / x eager | searched: dB held-out | float layers | "
    "MACs in INT8 | x eager | vs everything-INT8 speed | other photos dB (worst crop) |"
)


def _readme_row(case: dict[str, Any], c: dict[str, Any], everything: dict[str, Any] | None) -> str:
    """One engine's row: its searched result beside the same engine's everything-INT8 run."""
    d = c.get("details") or {}
    ext = d.get("engine_extension") or {}
    floats = f"{len(d.get('float_layers', []))} of {d.get('quantized_layers', '?')}"
    if ext.get("added"):
        floats += f" ({len(ext['added'])} added by the engine)"
    share = f"{100 * ext.get('int8_mac_share', d.get('int8_mac_share', 0)):.1f}%" if d else "-"
    all_col = f"{everything['psnr_db']} / {everything['speedup']}x" if everything else ""
    ratio = round(c["speedup"] / everything["speedup"], 2) if everything and c.get("speedup") else "-"
    photos = (case.get("external") or {}).get(c["name"], {})
    other = f"{photos['psnr_db']} ({photos['min_photo_db']})" if "psnr_db" in photos else "refused"
    gate = "" if c["passed"] else " FAIL"
    return (
        f"| {case['model']} | {case['size']} | {c['name']} | {all_col} | {c['psnr_db']}{gate} | {floats} | "
        f"{share} | {c.get('speedup')}x | {ratio} | {other} |"
    )


def readme_table(results: list[dict[str, Any]]) -> list[str]:
    """The README's table: each searched case beside its everything-INT8 twin, plus what auto served."""
    lines = [README_HEADER, "|---|---|---|---|---|---|---|---|---|---|"]
    plain = {(r["model"], r["size"]): r for r in results if "error" not in r and not r["search"]}
    for case in (r for r in results if "error" not in r and r["search"]):
        twin = plain.get((case["model"], case["size"]))
        twins = {c["name"]: c for c in twin["decision"]["candidates"]} if twin else {}
        for c in case["decision"]["candidates"]:
            if c["name"] in INT8:
                lines.append(_readme_row(case, c, twins.get(c["name"])))
        static = [c for c in case["decision"]["candidates"] if c["name"] == "int8-static"]
        d = (static[0].get("details") or {}) if static else {}
        search = f"search {d.get('search_trials')} trials, {d.get('search_seconds')} s"
        lines.append(
            f"| {case['model']} | {case['size']} | `auto` serves | | {case['decision']['chosen']} | | | | | "
            f"build {case['build']['seconds']} s; {search} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["defaults"], choices=sorted(CASES))
    ap.add_argument("--models", nargs="*", default=None, help="TYPE/NAME (instead of --cases)")
    ap.add_argument("--sizes", nargs="+", type=int, default=[256])
    ap.add_argument("--modes", nargs="+", default=["all", "search"], choices=["all", "search"])
    ap.add_argument("--external", action="store_true")
    ap.add_argument("--hand", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--table", type=Path, default=None, help="print the README table of a results file")
    args = ap.parse_args(argv)
    if args.table:
        print("\n".join(readme_table(json.loads(args.table.read_text()))))
        return 0
    models = (
        [tuple(m.split("/", 1)) for m in args.models]
        if args.models
        else [m for c in args.cases for m in CASES[c]]
    )
    results = []
    print(HEADER)
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model_type, name in models:
        for size in args.sizes:
            for mode in args.modes:
                trials = 48 if mode == "search" else 0
                r = _child(
                    [
                        model_type,
                        name,
                        size,
                        trials,
                        args.external and mode == "search",
                        args.hand and mode == "search",
                    ]
                )
                results.append(r)
                if "error" in r:
                    print(
                        f"| {model_type}/{name} | {size} | {mode} | ERROR {r['error'][-300:]!r} |", flush=True
                    )
                    continue
                for line in _rows(r):
                    print(line, flush=True)
                chosen, seconds = r["decision"]["chosen"], r["build"]["seconds"]
                print(f"<!-- auto: {chosen}; build {seconds} s; hand: {r.get('hand')} -->", flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
