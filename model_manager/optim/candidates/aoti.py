"""``aoti``: the FP32 module exported by torch.export and compiled by AOTInductor into a ``.pt2``.

Built from the module itself (no ONNX): one export with dynamic batch / H / W, one C++ (CPU) or
Triton (CUDA) compile, packaged into the entry. A load dlopens the package's library, so a second
process runs it without exporting or compiling again. The planner leaves it out where no C++
compiler is found and says so; a build that fails (an export torch cannot trace) is a failed
candidate with its reason, never a crash.
"""

from __future__ import annotations

from pathlib import Path

from ...runners import Runner
from ...runners.aoti_runner import PACKAGE, AotiRunner
from ..aoti import package_from_module
from ..graph import BuildContext
from .base import Candidate, OpenRequest


def _build(ctx: BuildContext, folder: Path) -> list[str]:
    ctx.begin("export with torch.export and compile with AOTInductor (a C++ build: a minute or two)", "aoti")
    return package_from_module(ctx.module, ctx.descriptor, folder, ctx.settings.device)


def _open(req: OpenRequest) -> Runner:
    return AotiRunner(req.folder / PACKAGE, req.descriptor, req.info, device=req.device)


CANDIDATES = (Candidate("aoti", (), _build, _open),)
