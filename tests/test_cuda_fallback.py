"""``auto`` on CUDA is a fallback chain: a link that fails to build or misses its gate hands over to
the next, and each reason reaches the notes (issue 18, defect 4).

No GPU here: the chain runs on the CPU with real ONNX Runtime and eager links, and the TensorRT
link is a candidate whose build fails as a TensorRT build can (the tests say "simulated").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model_manager.errors import EngineBuildError
from model_manager.models import all_architectures
from model_manager.optim.build_plan import build_plan
from model_manager.optim.candidates import registry
from model_manager.optim.candidates.base import Candidate, OpenRequest
from model_manager.optim.graph import BuildContext
from model_manager.optim.planner import Plan
from model_manager.optim.settings import BuildSettings
from model_manager.optim.strategies import AUTO, BASELINE
from model_manager.runners import Runner

from .conftest import small_config


def _failing_tensorrt_build(ctx: BuildContext, folder: Path) -> list[str]:
    raise EngineBuildError("tensorrt failed to build an engine from fp16.onnx: simulated out of memory")


def _never_opened(req: OpenRequest) -> Runner:
    raise AssertionError("a candidate whose build failed is never opened")


@pytest.fixture
def simulated_tensorrt_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.registered()  # load the real plugins first, then stand in for TensorRT's
    failing = Candidate("tensorrt", (), _failing_tensorrt_build, _never_opened)
    monkeypatch.setitem(registry._registered, "tensorrt", failing)


def _build(tmp_path: Path, candidates: tuple[str, ...], **settings: object) -> dict:
    arch = all_architectures()["ESPCN"]
    hp = small_config("ESPCN")
    module = arch.build(**hp).eval()
    chain = Plan(
        AUTO, candidates, "cpu", measured=False, notes=("ONNX Runtime CUDA: stands in",), fallback=True
    )
    base = BuildSettings(opt_size=(64, 64), time_budget_s=0.2, num_threads=2)
    out = build_plan(
        module, arch.descriptor(hp), chain, tmp_path, BuildSettings(**{**base.to_dict(), **settings})
    )
    return {"decision": out.decision, "notes": out.notes, "files": out.files}


@pytest.mark.usefixtures("simulated_tensorrt_failure")
def test_a_chain_serves_the_next_link_when_a_simulated_tensorrt_build_fails(tmp_path: Path) -> None:
    out = _build(tmp_path, ("tensorrt", "onnx", "int8-static"))
    assert out["decision"]["chosen"] == "onnx" and out["files"] == ["model.onnx"]
    assert "after tensorrt failed" in out["decision"]["reason"]
    assert out["notes"][0] == "ONNX Runtime CUDA: stands in"
    assert any(n.startswith("fell back: tensorrt failed to build: EngineBuildError") for n in out["notes"])
    built = {c["name"] for c in out["decision"]["candidates"]}
    assert built == {"tensorrt", "onnx", BASELINE}  # int8-static, after the served link, never built


@pytest.mark.usefixtures("simulated_tensorrt_failure")
def test_a_chain_whose_every_link_fails_serves_eager_fp32_with_each_reason(tmp_path: Path) -> None:
    gates = {"fp32": 400.0, "fp16": 400.0, "bf16": 400.0, "int8": 400.0}  # nothing can pass
    out = _build(tmp_path, ("tensorrt", "onnx"), gates=gates)
    assert out["decision"]["chosen"] == BASELINE and "every link" in out["decision"]["reason"]
    fell = [n for n in out["notes"] if n.startswith("fell back: ")]
    assert len(fell) == 2 and "tensorrt failed to build" in fell[0]
    assert "onnx reaches" in fell[1] and "below its 400.0 dB gate" in fell[1]
