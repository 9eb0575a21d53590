"""The ``aoti`` candidate: torch.export + AOTInductor, its package in the cache, and no compiler.

The compile tests are real (g++ and inductor on the default super-resolution model, about a
minute each on 2 cores) and marked ``slow``; the planner and probe tests are quick.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_manager import ModelConfig, ModelManager, Optimization, StrategyUnavailableError
from model_manager.descriptor import ModelDescriptor
from model_manager.errors import InvalidInputError, UnknownStrategyError
from model_manager.models import all_architectures
from model_manager.models.interpolation import arange_linspace
from model_manager.optim.aoti import admitted_shapes, dynamic_shapes, export_example
from model_manager.optim.hardware import Hardware, cxx_compiler, probe_hardware
from model_manager.optim.planner import plan
from model_manager.registry import ModelRegistry
from model_manager.runners import RunnerInfo
from model_manager.runners.aoti_runner import PACKAGE, SHAPES, AotiRunner, ExportedShapes, below_minimum
from model_manager.samples import sample_batch

from .conftest import small_config

NO_CXX = Hardware(cuda=False, cpu="test cpu", cores=2, cxx_compiler=None)
WITH_CXX = Hardware(cuda=False, cpu="test cpu", cores=2, cxx_compiler="/usr/bin/g++")
HAS_GXX = cxx_compiler() is not None


def test_the_exported_grid_equals_linspace_bit_for_bit() -> None:
    """IFNet's grid under torch.export (arange, so H / W stay symbolic) is linspace's, every size."""
    for steps in range(2, 4100):
        expected = torch.linspace(-1.0, 1.0, steps, dtype=torch.float32)
        assert torch.equal(arange_linspace(steps, torch.device("cpu")), expected), steps


def test_dynamic_shapes_share_one_batch_and_follow_the_size_multiple() -> None:
    registry = ModelRegistry.with_builtins()
    ifnet = registry.get("interpolation", "default").load().descriptor
    shapes = dynamic_shapes(ifnet)
    assert len(shapes) == 3 and shapes[0][0] is shapes[1][0] is shapes[2][0]  # one batch for all
    assert set(shapes[0]) == {0, 2, 3} and set(shapes[2]) == {0}  # the timestep: batch only
    assert "64" in str(shapes[0][2])  # H in steps of IFNet's size multiple
    espcn = registry.get("super_resolution", "default").load().descriptor
    assert set(dynamic_shapes(espcn)[0]) == {0, 2, 3}


def test_sizes_below_what_the_package_admits_are_named() -> None:
    """IFNet: export raises H / W's minimum to two blocks (128) although the profile starts at 64."""
    shapes = ExportedShapes(1, 128, 128, 64, "cpu", 24.0, 770.0)
    assert below_minimum(shapes, (1, 128, 192)) is None
    assert below_minimum(shapes, (2, 64, 192)) == "height 64 is below the exported minimum 128"
    assert below_minimum(shapes, (1, 128, 64)) == "width 64 is below the exported minimum 128"


def test_auto_skips_aoti_without_a_compiler_and_says_why() -> None:
    available = {"none", "onnx", "aoti"}
    p = plan(Optimization.AUTO, NO_CXX, available, "cpu")
    assert "aoti" not in p.candidates and any("aoti skipped" in n and "C++ compiler" in n for n in p.notes)
    assert "aoti" in plan(Optimization.AUTO, WITH_CXX, available, "cpu").candidates
    with pytest.raises(StrategyUnavailableError, match="aoti needs a C\\+\\+ compiler"):
        plan("aoti", NO_CXX, available, "cpu")
    assert plan("aoti", WITH_CXX, available, "cpu").candidates == ("aoti",)


def test_probe_finds_no_compiler_where_cxx_names_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/bin/c++")
    assert cxx_compiler() is None
    monkeypatch.setenv("CXX", sys.executable)  # runs, but `python --version` is not a compiler check
    assert cxx_compiler() == shutil.which(sys.executable)


def test_auto_considers_aoti_only_where_the_config_asks(tmp_path: Path) -> None:
    config = ModelConfig(cache_dir=tmp_path, device="cpu")
    assert "aoti" not in ModelManager(config)._loader.plan_for("auto").candidates
    included = ModelManager(config.replace(auto_include=("aoti",)))._loader.plan_for("auto")
    assert ("aoti" in included.candidates) == (probe_hardware().cxx_compiler is not None)
    with pytest.raises(UnknownStrategyError, match="unknown strategy 'aotl'"):
        ModelConfig(cache_dir=tmp_path, auto_include=("aotl",))


async def test_auto_with_aoti_and_no_compiler_notes_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/bin/c++")
    probe_hardware.cache_clear()
    try:
        config = ModelConfig(
            cache_dir=tmp_path,
            device="cpu",
            auto_include=("aoti",),
            auto_time_budget_s=0.2,
            auto_exclude=tuple(
                n
                for n in ModelManager(ModelConfig(cache_dir=tmp_path))._loader.plan_for("auto").candidates
                if n not in ("none", "onnx")
            ),
        )
        async with ModelManager(config) as manager:
            runner = await manager.load_optimized_model("super_resolution", "default", "auto")
        assert any("aoti skipped" in n and "C++ compiler" in n for n in runner.info.notes)
        assert runner.info.strategy in ("none", "onnx")
    finally:
        probe_hardware.cache_clear()


SECOND_PROCESS = """
import asyncio, json, sys, numpy as np, torch._inductor
from model_manager import ModelConfig, ModelManager
from model_manager.samples import sample_batch

def refuse(*a, **k):
    raise AssertionError("the second process compiled")

torch._inductor.aoti_compile_and_package = refuse

async def main():
    async with ModelManager(ModelConfig(cache_dir=sys.argv[1], device="cpu")) as manager:
        runner = await manager.load_optimized_model("super_resolution", "default", "aoti")
        np.save(sys.argv[2], runner(sample_batch(runner.descriptor, (40, 56))[0]))
        print(json.dumps({"hit": runner.info.cache_hit, "strategy": runner.info.strategy}))

asyncio.run(main())
"""


def _eager(module: torch.nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(*[torch.from_numpy(x) for x in inputs]).numpy()


def _check_the_runner_refuses_below_the_minimum(
    package: Path, folder: Path, descriptor: ModelDescriptor
) -> None:
    """The real package, its admitted minimum raised to 64 (as export raises IFNet's): refused, named."""
    folder.mkdir()
    shutil.copy(package, folder / PACKAGE)
    shapes = json.loads((package.parent / SHAPES).read_text())
    (folder / SHAPES).write_text(json.dumps({**shapes, "min_height": 64}))
    info = RunnerInfo("super_resolution", "default", "aoti", "torch", "cpu", "fp32")
    with AotiRunner(folder / PACKAGE, descriptor, info) as strict:
        assert strict(sample_batch(descriptor, (64, 56))[0]).shape[-2:] == (128, 112)
        with pytest.raises(InvalidInputError, match="height 40 is below the exported minimum 64"):
            strict(sample_batch(descriptor, (40, 56))[0])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GXX, reason="AOTInductor needs a C++ compiler; none runs here")
async def test_aoti_package_round_trips_and_a_corrupt_one_is_rebuilt(tmp_path: Path) -> None:
    config = ModelConfig(cache_dir=tmp_path / "cache", device="cpu")
    async with ModelManager(config) as manager:
        runner = await manager.load_optimized_model("super_resolution", "default", "aoti")
        module = await manager.load_real_model("super_resolution", "default")
        assert runner.info.strategy == "aoti" and runner.info.cache_hit is False
        assert runner.info.quality["psnr_db"] >= 40.0
        for batch, size in ((1, (40, 56)), (2, (97, 64)), (1, (256, 256))):  # sizes inside the profile
            x = np.concatenate([sample_batch(runner.descriptor, size)[0]] * batch)
            np.testing.assert_allclose(runner(x), _eager(module, x), atol=1e-4)
        expected = _eager(module, sample_batch(runner.descriptor, (40, 56))[0])
        package = Path(runner.info.artifact_path or "") / PACKAGE
    assert package.is_file()
    _check_the_runner_refuses_below_the_minimum(package, tmp_path / "strict", runner.descriptor)

    out = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(tmp_path / "cache"), str(tmp_path / "second.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"hit": True, "strategy": "aoti"}
    np.testing.assert_allclose(np.load(tmp_path / "second.npy"), expected, atol=1e-4)

    data = bytearray(package.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    package.write_bytes(bytes(data))
    async with ModelManager(config) as manager:
        rebuilt = await manager.load_optimized_model("super_resolution", "default", "aoti")
        assert rebuilt.info.cache_hit is False  # detected, moved aside, built again
        x = sample_batch(rebuilt.descriptor, (40, 56))[0]
        np.testing.assert_allclose(rebuilt(x), expected, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GXX, reason="AOTInductor needs a C++ compiler; none runs here")
async def test_auto_measures_aoti_where_asked_and_keeps_its_numbers(tmp_path: Path) -> None:
    probe = ModelManager(ModelConfig(cache_dir=tmp_path))._loader.plan_for("auto").candidates
    config = ModelConfig(
        cache_dir=tmp_path / "cache",
        device="cpu",
        auto_include=("aoti",),
        auto_exclude=tuple(n for n in probe if n != "none"),
        auto_time_budget_s=0.5,
    )
    async with ModelManager(config) as manager:
        runner = await manager.load_optimized_model("super_resolution", "default", "auto")
    rows = {c["name"]: c for c in runner.info.decision["candidates"]}
    assert set(rows) == {"none", "aoti"} and rows["aoti"]["passed"] and rows["aoti"]["psnr_db"] >= 40.0
    assert rows["aoti"]["median_ms"] > 0 and runner.info.strategy in ("none", "aoti")


@pytest.mark.slow
def test_ifnet_exports_with_symbolic_sizes_and_its_program_matches_eager() -> None:
    """What made IFNet's package possible: export no longer specialises H / W (``linspace``).

    The compile itself (13 minutes for IFNet on 2 cores) is measured by benchmarks/aoti.py, not here.
    """
    arch = all_architectures()["IFNet"]
    hp = small_config("IFNet")
    module = arch.build(**hp).eval()
    descriptor = arch.descriptor(hp)
    example = export_example(descriptor, "cpu")
    program = torch.export.export(module, tuple(example), dynamic_shapes=dynamic_shapes(descriptor))
    first = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "img0")
    assert all(isinstance(d, torch.SymInt) for d in first.meta["val"].shape[::2])  # batch, H, W free
    admitted = admitted_shapes(program, descriptor, "cpu", 0.0, 0.0)
    assert (admitted.min_batch, admitted.min_height, admitted.min_width) == (1, 128, 128)
    exported = program.module()
    with pytest.raises(AssertionError, match="Guard failed"):  # one block of 64: the program refuses
        exported(*[torch.from_numpy(f) for f in sample_batch(descriptor, (64, 128))])
    for batch, size in ((1, (128, 192)), (3, (192, 320))):
        frames = [np.concatenate([f] * batch) for f in sample_batch(descriptor, size)]
        with torch.inference_mode():
            got = exported(*[torch.from_numpy(f) for f in frames]).numpy()
        np.testing.assert_allclose(got, _eager(module, *frames), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or not HAS_GXX, reason="needs a CUDA GPU and a C++ compiler"
)
async def test_aoti_on_cuda_compiles_for_the_gpu_and_matches_eager(tmp_path: Path) -> None:
    config = ModelConfig(cache_dir=tmp_path / "cache", device="cuda")
    async with ModelManager(config) as manager:
        runner = await manager.load_optimized_model("super_resolution", "default", "aoti")
        module = await manager.load_real_model("super_resolution", "default")
        assert runner.info.device == "cuda" and runner.info.strategy == "aoti"
        x = sample_batch(runner.descriptor, (96, 128))[0]
        np.testing.assert_allclose(runner(x), _eager(module, x), atol=1e-3)
