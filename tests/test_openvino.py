"""OpenVINO backend: OvRunner contract, the openvino / openvino-int8 strategies, cache and auto.

Real OpenVINO and NNCF (the ``openvino`` extra, installed by CI). Promises: every default model
passes its quality gate against FP32 through each OpenVINO strategy on a held-out photo; the IR and
its compiled blob round-trip through the cache, and a second process hits without recompiling;
``auto`` works with and without the extra; NNCF calibration is deterministic for fixed data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ModelConfig, ModelManager
from model_manager.errors import InvalidInputError, StrategyUnavailableError
from model_manager.optim.quality import compare
from model_manager.samples import sample_batch

pytest.importorskip("openvino")
pytest.importorskip("nncf")

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = [("super_resolution", "espcn-x2"), ("style_transfer", "sketch"), ("interpolation", "ifnet-s")]


def _config(tmp_path: Path, **kw) -> ModelConfig:
    return ModelConfig(
        cache_dir=tmp_path / "cache", device="cpu", auto_time_budget_s=0.3, num_threads=2, **kw
    )


def run_child(script: str, cache: Path) -> dict:
    """Run ``script`` in a fresh Python with ``cache``; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", script, str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _held_out_inputs(descriptor, size=(72, 96)) -> list[np.ndarray]:
    """Inputs cut from the photos at a size the build never saw (the build uses the profile's opt)."""
    return sample_batch(descriptor, descriptor.fit_size(*size), 1)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["openvino", "openvino-int8"])
@pytest.mark.parametrize(("model_type", "name"), DEFAULTS, ids=[n for _, n in DEFAULTS])
async def test_every_default_model_passes_its_gate_through_each_openvino_strategy(
    tmp_path: Path, model_type: str, name: str, strategy: str
) -> None:
    """Built, gated against FP32 at build time, and again here on a held-out size."""
    async with ModelManager(_config(tmp_path)) as manager:
        runner = await manager.load_optimized_model(model_type, name, optimization=strategy)
        module = await manager.load_real_model(model_type, name)
        assert runner.info.backend == "openvino" and runner.info.strategy.startswith(strategy)
        inputs = _held_out_inputs(runner.descriptor)
        with torch.no_grad():
            reference = module(*(torch.from_numpy(x) for x in inputs)).numpy()
        out = runner(*inputs)
        assert isinstance(out, np.ndarray) and out.shape == reference.shape
        q = compare(reference, out, runner.descriptor.output.value_range)
        gate = runner.info.quality["min_psnr_db"]
        assert q.psnr_db >= gate, f"{name} {runner.info.strategy}: {q.psnr_db:.1f} dB < {gate} dB"


async def test_ov_runner_keeps_the_runner_contract(tmp_path: Path) -> None:
    """numpy in -> numpy out, torch in -> torch out, sizes off the profile, bad input named, closed."""
    async with ModelManager(_config(tmp_path)) as manager:
        runner = await manager.load_optimized_model("super_resolution", "espcn-x2", optimization="openvino")
        (x,) = sample_batch(runner.descriptor, (37, 53), 2)
        out = runner(x)
        assert isinstance(out, np.ndarray) and out.shape == (2, 3, 74, 106)
        t = await runner.infer(torch.from_numpy(x))
        assert isinstance(t, torch.Tensor) and np.abs(t.numpy() - out).max() < 1e-5
        with pytest.raises(InvalidInputError, match="expected dtype float32"):
            runner(x.astype(np.float64))
        assert runner.input_spec[0].name == "input"
    assert runner.closed


def test_ov_runner_compiles_each_input_shape_static_up_to_its_limit_then_runs_the_ir_as_saved(
    tmp_path: Path,
) -> None:
    """Issue 17: OpenVINO runs static shapes much faster. Each new input shape gets a static
    compile (batch, H and W fixed) up to ``STATIC_SHAPES``; later shapes share the IR's dynamic
    compile; every path gives the same pixels, and the IR on disk keeps its dynamic dimensions."""
    import openvino as ov

    from model_manager.optim.intermediates import onnx_from_torch
    from model_manager.optim.ov_ir import ir_from_onnx
    from model_manager.optim.settings import BuildSettings
    from model_manager.registry import ModelRegistry
    from model_manager.runners import RunnerInfo
    from model_manager.runners.ov_runner import STATIC_SHAPES, OvRunner

    loaded = ModelRegistry.with_builtins().get("super_resolution", "default").load()
    onnx = onnx_from_torch(loaded.module, loaded.descriptor, tmp_path, BuildSettings(opt_size=(32, 32)))[0]
    xml = tmp_path / "model.xml"
    ir_from_onnx(tmp_path / onnx, xml)
    info = RunnerInfo("super_resolution", "default", "openvino", "openvino", "cpu", "fp32")
    (pair,) = sample_batch(loaded.descriptor, (24, 40), 2)
    with OvRunner(xml, loaded.descriptor, info, num_threads=2) as runner:
        singles = np.concatenate([runner(pair[:1]), runner(pair[1:])])
        both = runner(pair)
        assert runner.compiled_shapes == [((1, 3, 24, 40),), ((2, 3, 24, 40),)]
        assert both.shape == (2, 3, 48, 80) and np.abs(both - singles).max() < 1e-5
        sizes = [(16 + 8 * i, 16) for i in range(STATIC_SHAPES)]
        outs = [runner(sample_batch(loaded.descriptor, size, 1)[0]) for size in sizes]
        assert len(runner.compiled_shapes) == STATIC_SHAPES, "beyond the limit: the dynamic compile"
        assert [o.shape[2:] for o in outs] == [(2 * h, 2 * w) for h, w in sizes]
    with OvRunner(xml, loaded.descriptor, info, num_threads=2) as dynamic_only:
        dynamic_only._static = dict.fromkeys(range(STATIC_SHAPES))  # no room: the dynamic compile
        np.testing.assert_allclose(dynamic_only(pair), both, atol=1e-5)
    assert ov.Core().read_model(str(xml)).inputs[0].get_partial_shape()[0].is_dynamic, "the IR is unchanged"


_SECOND = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from model_manager import ModelConfig, ModelManager
    from model_manager.samples import sample_batch

    async def main(cache):
        config = ModelConfig(cache_dir=cache, device="cpu", auto_time_budget_s=0.3, num_threads=2)
        async with ModelManager(config) as m:
            r = await m.load_optimized_model("super_resolution", "espcn-x2", "openvino-int8")
            y = r(sample_batch(r.descriptor, (40, 40))[0])
            print(json.dumps(dict(hit=r.info.cache_hit, path=r.info.artifact_path, checksum=float(y.sum()))))

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.slow
async def test_the_ir_and_its_compiled_blob_round_trip_through_the_cache(tmp_path: Path) -> None:
    """A second process hits the entry and finds the compiled blob (no new blob is written)."""
    async with ModelManager(_config(tmp_path)) as manager:
        first = await manager.load_optimized_model(
            "super_resolution", "espcn-x2", optimization="openvino-int8"
        )
        y = first(sample_batch(first.descriptor, (40, 40))[0])
    entry = Path(first.info.artifact_path)
    entry = entry if entry.is_dir() else entry.parent
    manifest = json.loads((entry / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert {"model.ov-int8.xml", "model.ov-int8.bin"} <= names and any(n.endswith(".blob") for n in names)
    assert manifest["key"]["versions"]["openvino"] and manifest["key"]["versions"]["nncf"]
    before = sorted(p.name for p in entry.iterdir())
    assert before == sorted([*names, "manifest.json"]), "opening wrote files the manifest does not list"
    second = run_child(_SECOND, tmp_path / "cache")
    assert second["hit"] is True and abs(second["checksum"] - float(y.sum())) < 1e-3
    assert sorted(p.name for p in entry.iterdir()) == before, "the second process recompiled"


_WITHOUT = textwrap.dedent("""
    import asyncio, json, sys
    sys.modules["openvino"] = None  # as if the extra were not installed
    from model_manager import ModelConfig, ModelManager
    from model_manager.errors import StrategyUnavailableError
    from model_manager.optim.candidates.registry import registered
    from model_manager.samples import sample_batch

    async def main(cache):
        config = ModelConfig(cache_dir=cache, device="cpu", auto_time_budget_s=0.3, num_threads=2,
                             auto_exclude=("int8-torch", "int8-static-qop", "int8-dynamic"))
        async with ModelManager(config) as m:
            r = await m.load_optimized_model("super_resolution", "espcn-x2", "auto")
            y = r(sample_batch(r.descriptor, (32, 32))[0])
            try:
                await m.load_optimized_model("super_resolution", "espcn-x2", "openvino")
                error = None
            except StrategyUnavailableError as exc:
                error = str(exc)
            names = [c["name"] for c in r.info.decision["candidates"]]
            print(json.dumps(dict(candidates=names, registered=sorted(registered()), shape=list(y.shape),
                                  notes=r.info.notes, error=error)))

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.slow
def test_auto_without_the_extra_changes_nothing_and_names_the_extra(tmp_path: Path) -> None:
    """openvino blocked: no OpenVINO candidate, auto still serves, the explicit strategy names the extra."""
    report = run_child(_WITHOUT, tmp_path / "cache")
    assert not any(n.startswith("openvino") for n in report["registered"] + report["candidates"])
    assert report["shape"] == [1, 3, 64, 64]
    assert report["error"] and "pip install 'model_manager[openvino]'" in report["error"]


@pytest.mark.slow
async def test_auto_with_the_extra_measures_the_openvino_candidates(tmp_path: Path) -> None:
    """With the extra, auto builds, gates and times OpenVINO next to the others; info shows every number."""
    config = _config(tmp_path, auto_exclude=("int8-torch", "int8-static-qop", "int8-dynamic"))
    async with ModelManager(config) as manager:
        runner = await manager.load_optimized_model("super_resolution", "espcn-x2", optimization="auto")
        (x,) = sample_batch(runner.descriptor, (32, 32))
        assert runner(x).shape == (1, 3, 64, 64)
    table = {c["name"]: c for c in runner.info.decision["candidates"]}
    assert {"openvino", "openvino-int8"} <= set(table)
    for name in ("openvino", "openvino-int8"):
        assert table[name]["error"] is None and table[name]["psnr_db"] is not None
        assert table[name]["median_ms"] is not None and table[name]["speedup"] is not None


def test_nncf_calibration_is_deterministic_for_fixed_data(tmp_path: Path) -> None:
    """Quantizing the same IR on the same crops twice gives byte-identical INT8 IRs."""
    from model_manager.models import all_architectures
    from model_manager.optim.calibration import sample_calibration_set
    from model_manager.optim.intermediates import onnx_from_torch
    from model_manager.optim.ov_ir import OvInt8Recipe, int8_ir_from_ir, ir_from_onnx
    from model_manager.optim.settings import BuildSettings

    loaded = all_architectures()["ESPCN"].create()
    onnx_from_torch(loaded.module, loaded.descriptor, tmp_path, BuildSettings(opt_size=(64, 64)))
    ir_from_onnx(tmp_path / "model.onnx", tmp_path / "fp32.xml")
    data = sample_calibration_set(loaded.descriptor, (64, 64), 4)
    outs = []
    for i in range(2):
        int8_ir_from_ir(tmp_path / "fp32.xml", tmp_path / f"int8-{i}.xml", data, OvInt8Recipe())
        outs.append(((tmp_path / f"int8-{i}.bin").read_bytes(), (tmp_path / f"int8-{i}.xml").read_bytes()))
    assert outs[0][0] == outs[1][0]  # weights, scales and zero points: byte-identical
    # OpenVINO numbers the nodes it creates with a process-wide counter (Constant_31146...): only that differs
    graphs = [re.sub(rb'name="([A-Za-z]+)_\d+"', rb'name="\1_N"', xml) for _, xml in outs]
    assert graphs[0] == graphs[1]
    assert len(outs[0][0]) < (tmp_path / "fp32.bin").stat().st_size  # INT8 weights are smaller


def test_the_explicit_strategies_need_the_extra_and_a_cpu() -> None:
    """openvino on a CUDA device is refused with the reason."""
    from model_manager import Optimization
    from model_manager.optim.hardware import Hardware
    from model_manager.optim.planner import plan

    hw = Hardware(cuda=True)
    with pytest.raises(StrategyUnavailableError, match="openvino"):
        plan(Optimization.OPENVINO, hw, {"onnx", "none"}, "cuda")


# -- the float-layer decision in OpenVINO ------------------------------------------------------------
class _ConvNormConv(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.InstanceNorm2d(8, affine=True)
        self.out = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(torch.relu(self.norm(self.head(x))))


def test_an_instance_norm_kept_float_leaves_no_fake_quantize_on_the_ops_openvino_made_of_it(
    tmp_path: Path,
) -> None:
    """OpenVINO turns InstanceNormalization into MVN -> Multiply -> Add and names only the Add after
    the ONNX node; NNCF quantizes the MVN's input. The ignored scope must reach the MVN."""
    import openvino as ov

    from model_manager.optim.candidates.ov import OV_INT8_IR, OV_IR, _recipe
    from model_manager.optim.graph import BuildContext, Files
    from model_manager.optim.int8_steps import INT8_FLOAT_LAYERS, read_engine_float_layers
    from model_manager.optim.intermediates import FP32_ONNX
    from model_manager.optim.layer_names import onnx_node_outputs
    from model_manager.optim.ov_ir import ov_ops_by_node
    from model_manager.optim.settings import BuildSettings

    from .test_mixed_precision import _decision, _descriptor

    ctx = BuildContext(_ConvNormConv().eval(), _descriptor(), BuildSettings(opt_size=(64, 64)), tmp_path)
    xml = ctx.get(OV_IR).main
    ops = ov_ops_by_node(xml, onnx_node_outputs(ctx.get(FP32_ONNX).main, ["/norm/InstanceNormalization"]))
    internal = ops["/norm/InstanceNormalization"]
    types = {op.get_friendly_name(): op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()}
    assert "MVN" in {types[n] for n in internal}
    assert all(not n.startswith("/head") for n in internal), "the conv before it is another node"
    assert any(
        re.match(p, n) for p in _recipe(ctx, ["/norm/InstanceNormalization"], ops).ignored for n in internal
    )

    def fq_into_mvn(model: ov.Model) -> int:
        return sum(
            1
            for op in model.get_ops()
            if op.get_type_name() == "MVN"
            and op.input(0).get_source_output().get_node().get_type_name() == "FakeQuantize"
        )

    floats = tmp_path / "floats"
    floats.mkdir()
    ranking = ["/head/Conv", "/norm/InstanceNormalization", "/out/Conv"]
    (floats / "float_layers.json").write_text(
        json.dumps(_decision(["/norm/InstanceNormalization"], ranking).to_dict())
    )
    ctx = BuildContext(
        _ConvNormConv().eval(),
        _descriptor(),
        BuildSettings(opt_size=(64, 64)),
        tmp_path / "kept",
        provided={INT8_FLOAT_LAYERS: Files(floats, ("float_layers.json",))},
    )
    made = ctx.get(OV_INT8_IR)
    assert fq_into_mvn(ov.Core().read_model(str(made.main))) == 0
    record = read_engine_float_layers(made.folder, "openvino-int8")
    assert record is not None and record.float_layers[0] == "/norm/InstanceNormalization"


def test_openvino_int8_extends_a_decision_nncf_misses_with(tmp_path: Path) -> None:
    """Given a decision that keeps nothing in float, NNCF's model of the sensitive-layer net fails
    its target and the step extends the float set along the ranking until it passes."""
    from model_manager.optim.candidates.ov import OV_INT8_IR
    from model_manager.optim.int8_steps import read_engine_float_layers

    from .test_mixed_precision import TARGET, _ctx_with_decision

    made = _ctx_with_decision(tmp_path, []).get(OV_INT8_IR)
    record = read_engine_float_layers(made.folder, "openvino-int8")
    assert record is not None and record.psnr_decision_db < TARGET <= record.psnr_db
    assert "/sensitive/Conv" in record.added and record.passed
    assert {p.name for p in made.folder.iterdir()} == {
        "model.ov-int8.xml",
        "model.ov-int8.bin",
        "float_layers.openvino-int8.json",
    }, "trial files are removed"
