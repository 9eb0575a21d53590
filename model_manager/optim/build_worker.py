"""The build process: ``python -m model_manager.optim.build_worker REQUEST.json``.

Builds run here, not in the application: a crash inside a native builder (exporter, quantizer,
TensorRT) kills this process, and the application gets an EngineBuildError instead of dying.
Candidates are also timed here, in a process that has done nothing else. Progress goes to
stdout as JSON lines; the result (or the error) to the path the request names.

The worker dies with its parent (Linux ``PR_SET_PDEATHSIG``): an application killed mid-build
leaves no orphan still writing into the cache. Architectures registered outside this package
(a plugin module) are imported by the module name the parent sends.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from ..models import all_architectures, load_strict
from .build import build_plan, result_to_dict
from .candidates import BuildSettings
from .strategy import Plan

EXIT_HANDLED_ERROR = 2


def _progress(message: str) -> None:
    print(json.dumps({"progress": message}), flush=True)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the FP32 module from its weights file and build the plan's candidates."""
    from safetensors.torch import load_file

    settings = BuildSettings.from_dict(request["settings"])
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    module_name = request.get("architecture_module")
    if module_name and request["architecture"] not in all_architectures():
        importlib.import_module(module_name)  # a plugin architecture registers itself on import
    arch = all_architectures()[request["architecture"]]
    hp = request["hyperparameters"]
    module = arch.build(**hp)
    load_strict(module, load_file(request["weights_path"]), arch.id)
    module.eval()
    plan = Plan(
        **{
            **request["plan"],
            "candidates": tuple(request["plan"]["candidates"]),
            "notes": tuple(request["plan"]["notes"]),
        }
    )
    out = build_plan(module, arch.descriptor(hp), plan, Path(request["out_dir"]), settings, _progress)
    return result_to_dict(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m model_manager.optim.build_worker REQUEST.json", file=sys.stderr)
        return 64
    request = json.loads(Path(args[0]).read_text())
    if "parent_pid" in request:
        die_with_parent(int(request["parent_pid"]))
    result_path = Path(request["result_path"])
    try:
        result = run(request)
    except Exception as exc:  # reported to the parent, which re-raises it as the right type
        traceback.print_exc()
        result_path.write_text(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return EXIT_HANDLED_ERROR
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
