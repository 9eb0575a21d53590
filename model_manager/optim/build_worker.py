"""The build process: ``python -m model_manager.optim.build_worker REQUEST.json``.

Builds run here, not in the application: a crash inside a native builder (exporter, quantizer,
TensorRT) kills this process, and the application gets an EngineBuildError instead of dying.
Candidates are also timed here, in a process that has done nothing else. Progress goes to
stdout as JSON lines; the result (or the error) to the path the request names.
"""

from __future__ import annotations

import json
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


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the FP32 module from its weights file and build the plan's candidates."""
    from safetensors.torch import load_file

    settings = BuildSettings.from_dict(request["settings"])
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
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
