"""Builds in a child process: ``build_in_subprocess`` (the parent's side) and ``main`` (the child's).

Why a subprocess and not a worker thread: exporters, quantizers and TensorRT are native code; a
segfault or abort in them must not take the application down, and a build holds the GIL for
long stretches. Candidates are also timed there, in a process that has done nothing else. A
thread is used only for user factory models, which a child cannot rebuild.

The child (``python -m model_manager.optim.build_process REQUEST.json``) rebuilds the FP32 module
from a safetensors file, runs ``build_plan``, sends every build event as a JSON line on its
stdout (the parent publishes them on the progress channel) and writes the result (or the error)
to the path the request names. It dies with its parent (Linux ``PR_SET_PDEATHSIG``), so an
application killed mid-build leaves no orphan still writing into the cache; architectures
registered outside this package (a plugin module) are imported by the module name the parent sends.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import json
import logging
import os
import signal
import sys
import tempfile
import traceback
from collections import deque
from pathlib import Path
from typing import IO, Any

from torch import nn

from ..cache import BuildOutput
from ..cache.storage import storage_cause, write_error
from ..descriptor import ModelDescriptor, descriptor_from_dict
from ..errors import CacheWriteError, EngineBuildError, ModelManagerError, QualityGateError
from ..host_memory import keep_freed_memory
from ..models import all_architectures, load_strict
from ..progress import BuildEvent, publish
from .build_plan import build_plan, result_to_dict
from .planner import Plan
from .settings import BuildSettings

log = logging.getLogger(__name__)

EXIT_HANDLED_ERROR = 2
_ERRORS: dict[str, type[ModelManagerError]] = {
    "QualityGateError": QualityGateError,
    "CacheWriteError": CacheWriteError,
}


# -- the parent's side ------------------------------------------------------------------------------
async def build_in_subprocess(
    module: nn.Module,
    architecture: str,
    hyperparameters: dict[str, Any],
    descriptor: ModelDescriptor,
    plan: Plan,
    settings: BuildSettings,
    out_dir: Path,
    label: str,
) -> BuildOutput:
    """Build ``plan`` for the module in ``out_dir`` from a fresh Python process."""
    from safetensors.torch import save

    with tempfile.TemporaryDirectory(prefix="model_manager-build-") as work:
        result_path = Path(work) / "result.json"
        weights = Path(work) / "weights.safetensors"
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        try:  # bytes, then a plain write: a full disk is then an OSError, not a SafetensorError
            await asyncio.to_thread(weights.write_bytes, save(state))
        except OSError as exc:
            if (cause := storage_cause(exc)) is None:
                raise
            raise write_error("the weights for the build process", work, cause) from exc
        request = {
            "architecture": architecture,
            "architecture_module": type(all_architectures()[architecture]).__module__,
            "parent_pid": os.getpid(),
            "hyperparameters": hyperparameters,
            "descriptor": descriptor.to_dict(),  # with the profile this load asked for
            "weights_path": str(weights),
            "out_dir": str(out_dir),
            "result_path": str(result_path),
            "label": label,
            "plan": {
                "requested": plan.requested,
                "candidates": list(plan.candidates),
                "device": plan.device,
                "measured": plan.measured,
                "notes": list(plan.notes),
                "fallback": plan.fallback,
            },
            "settings": settings.to_dict(),
        }
        (Path(work) / "request.json").write_text(json.dumps(request))
        code, stderr = await _run_child(Path(work) / "request.json")
        return _outcome(code, stderr, result_path, label)


async def _run_child(request: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        str(request),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tail: deque[str] = deque(maxlen=30)
    try:
        await asyncio.gather(_republish(proc.stdout), _collect(proc.stderr, tail))
        code = await proc.wait()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    return code, "".join(tail)


async def _republish(stream: asyncio.StreamReader | None) -> None:
    """The child's build events, published on this process's progress channel."""
    if stream is None:
        return
    async for raw in stream:
        try:
            event = BuildEvent.from_dict(json.loads(raw)["event"])
        except (ValueError, KeyError, TypeError):
            continue
        publish(event)


async def _collect(stream: asyncio.StreamReader | None, tail: deque[str]) -> None:
    if stream is None:
        return
    async for raw in stream:
        tail.append(raw.decode(errors="replace"))


def _outcome(code: int, stderr: str, result_path: Path, label: str) -> BuildOutput:
    if code < 0:
        name = signal.Signals(-code).name
        raise EngineBuildError(
            f"the build process for {label} died with {name}; last output:\n{stderr[-2000:]}"
        )
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        raise EngineBuildError(
            f"the build process for {label} exited with code {code} and no result; "
            f"last output:\n{stderr[-2000:]}"
        ) from None
    if "error" in result:
        cls = _ERRORS.get(result["error"], EngineBuildError)
        raise cls(f"{label}: {result['error']}: {result['message']}")
    return BuildOutput(**result)


# -- the child's side -------------------------------------------------------------------------------
def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit if it already has."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _event_writer(stream: IO[str]) -> Any:
    """Build events as JSON lines on ``stream`` (a private copy of stdout: builders may redirect it)."""

    def write(event: BuildEvent) -> None:
        stream.write(json.dumps({"event": event.to_dict()}) + "\n")
        stream.flush()

    return write


def run(request: dict[str, Any], events: Any = None) -> dict[str, Any]:
    """Rebuild the FP32 module from its weights file and build the plan's candidates."""
    import torch
    from safetensors.torch import load_file

    settings = BuildSettings.from_dict(request["settings"])
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    if settings.keep_freed_memory:
        keep_freed_memory()
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
    out = build_plan(
        module,
        descriptor_from_dict(request["descriptor"]),
        plan,
        Path(request["out_dir"]),
        settings,
        events,
        request.get("label", ""),
    )
    return result_to_dict(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m model_manager.optim.build_process REQUEST.json", file=sys.stderr)
        return 64
    events = _event_writer(os.fdopen(os.dup(sys.stdout.fileno()), "w"))
    request = json.loads(Path(args[0]).read_text())
    if "parent_pid" in request:
        die_with_parent(int(request["parent_pid"]))
    result_path = Path(request["result_path"])
    try:
        result = run(request, events)
    except Exception as exc:  # reported to the parent, which re-raises it as the right type
        traceback.print_exc()
        result_path.write_text(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        return EXIT_HANDLED_ERROR
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the result is written: skip tearing down torch / OpenVINO (a second or two)
