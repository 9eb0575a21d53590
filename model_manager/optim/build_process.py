"""Run a build in a child process and turn its outcome into a BuildOutput or an exception.

Why a subprocess and not a worker thread: exporters, quantizers and TensorRT are native code; a
segfault or abort in them must not take the application down, and a build holds the GIL for
long stretches. A thread is used only for user factory models, which a child cannot rebuild.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from torch import nn

from ..cache import BuildOutput
from ..cache.storage import storage_cause, write_error
from ..errors import CacheWriteError, EngineBuildError, ModelManagerError, QualityGateError
from ..models import all_architectures
from .candidates import BuildSettings
from .strategy import Plan

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[ModelManagerError]] = {
    "QualityGateError": QualityGateError,
    "CacheWriteError": CacheWriteError,
}


async def build_in_subprocess(
    module: nn.Module,
    architecture: str,
    hyperparameters: dict[str, Any],
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
            "weights_path": str(weights),
            "out_dir": str(out_dir),
            "result_path": str(result_path),
            "plan": {
                "requested": plan.requested,
                "candidates": list(plan.candidates),
                "device": plan.device,
                "measured": plan.measured,
                "notes": list(plan.notes),
            },
            "settings": settings.to_dict(),
        }
        (Path(work) / "request.json").write_text(json.dumps(request))
        code, stderr = await _run_child(Path(work) / "request.json", label)
        return _outcome(code, stderr, result_path, label)


async def _run_child(request: Path, label: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "model_manager.optim.build_worker",
        str(request),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tail: deque[str] = deque(maxlen=30)
    try:
        await asyncio.gather(_follow_progress(proc.stdout, label), _collect(proc.stderr, tail))
        code = await proc.wait()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    return code, "".join(tail)


async def _follow_progress(stream: asyncio.StreamReader | None, label: str) -> None:
    from tqdm import tqdm

    if stream is None:
        return
    with tqdm(desc=f"building {label}", unit="step", disable=None, leave=False) as bar:
        async for raw in stream:
            try:
                message = json.loads(raw)["progress"]
            except (ValueError, KeyError, TypeError):
                continue
            log.info("%s: %s", label, message)
            bar.set_postfix_str(message[:60])
            bar.update(1)


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
