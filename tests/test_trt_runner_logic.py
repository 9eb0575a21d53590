"""TrtRunner's engine-facing logic on the CPU, with fake engines, contexts and a fake ``tensorrt``.

What a CPU can check: the engine's I/O dtypes are read and mapped (unsupported ones are named),
the output is allocated in the engine's dtype, ``from_engine`` reads the scale from the engine's
shapes, and a False from ``set_input_shape`` / ``set_tensor_address`` is a BackendError naming the
tensor with what TensorRT logged. The fakes are plain classes with the methods TensorRT's bindings
have (TensorRT 11.4 names). The stream ordering needs a GPU: the tests marked ``gpu`` at the end
(skipped here) check it for TensorRT and for ONNX Runtime's CUDA I/O binding.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model_manager.errors import BackendError, InvalidInputError
from model_manager.runners import RunnerInfo

Shape = tuple[int, ...]

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_gpu_and_trt = pytest.mark.skipif(
    not (torch.cuda.is_available() and HAS_TRT), reason="needs a CUDA GPU and the tensorrt package"
)


# -- fakes -----------------------------------------------------------------------------------------


class FakeDataType:
    """Stands for a ``trt.DataType`` member: only its ``name`` is read."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"DataType.{self.name}"


class FakeEngine:
    """An ICudaEngine with inputs of one profile and one output whose H, W are ``out_hw(input)``."""

    def __init__(
        self,
        inputs: dict[str, tuple[str, tuple[Shape, Shape, Shape]]],
        output: tuple[str, str],
        out_hw: Any = lambda h, w: (h * 4, w * 4),
    ) -> None:
        self.inputs = inputs
        self.output = output
        self.out_hw = out_hw

    @property
    def num_io_tensors(self) -> int:
        return len(self.inputs) + 1

    def get_tensor_name(self, index: int) -> str:
        return [*self.inputs, self.output[0]][index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name in self.inputs else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> FakeDataType:
        return FakeDataType(self.inputs[name][0] if name in self.inputs else self.output[1])

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
        assert profile == 0
        return [list(s) for s in self.inputs[name][1]]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


class FakeContext:
    """An IExecutionContext: records shapes and addresses; refuses the names in ``refuse_*``."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, Shape] = {}
        self.addresses: dict[str, int] = {}
        self.refuse_shape: set[str] = set()
        self.refuse_address: set[str] = set()

    def set_input_shape(self, name: str, shape: Shape) -> bool:
        if name in self.refuse_shape:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, address: int) -> bool:
        if name in self.refuse_address:
            return False
        self.addresses[name] = address
        return True

    def get_tensor_shape(self, name: str) -> Shape:
        assert name == self.engine.output[0]
        first = self.shapes.get(next(iter(self.engine.inputs)))
        if first is None:
            return (-1, -1, -1, -1)
        return (first[0], 3, *self.engine.out_hw(first[2], first[3]))


class FakeLogger:
    """What ``trt_session.make_logger`` gives: the last errors TensorRT logged, in ``errors``."""

    def __init__(self, *errors: str) -> None:
        self.errors: deque[str] = deque(errors, maxlen=8)


PROFILE = ((1, 3, 16, 16), (1, 3, 64, 64), (4, 3, 256, 256))
TRT = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"))


def fake_tensorrt(engine: FakeEngine) -> types.SimpleNamespace:
    """A ``tensorrt`` module for ``trt_session``: a Runtime that deserializes to ``engine``."""

    class ILogger:
        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine:
            return engine

    return types.SimpleNamespace(
        ILogger=ILogger, Runtime=Runtime, TensorIOMode=TRT.TensorIOMode, __version__="11.4.0.106"
    )


def engine_runner_descriptor(engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The descriptor ``TrtRunner.from_engine`` builds for ``engine`` (a fake tensorrt; no CUDA)."""
    from model_manager.runners.trt_runner import TrtRunner

    class Recorded(TrtRunner):
        def __init__(self, engine_path: Any, descriptor: Any, info: Any, **_: Any) -> None:
            self.descriptor = descriptor

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(engine))
    path = tmp_path / "model.engine"
    path.write_bytes(b"plan")
    return Recorded.from_engine(path).descriptor


# -- dtypes (issue 18, defect 5) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("FLOAT", torch.float32),
        ("HALF", torch.float16),
        ("BF16", torch.bfloat16),
        ("INT8", torch.int8),
        ("INT32", torch.int32),
        ("INT64", torch.int64),
        ("BOOL", torch.bool),
        ("UINT8", torch.uint8),
    ],
)
def test_tensorrt_data_types_map_to_torch_dtypes(name: str, dtype: torch.dtype) -> None:
    """A ``trt.DataType`` (faked: only ``.name`` is read) or its name gives the buffer's torch dtype."""
    from model_manager.runners.trt_io import torch_dtype

    assert torch_dtype(FakeDataType(name), "input") == torch_dtype(name, "input") == dtype


def test_an_unsupported_data_type_names_the_tensor_what_was_expected_and_what_came() -> None:
    """FP8 (and the other types torch cannot hold as a buffer here) is refused, not read as float32."""
    from model_manager.runners.trt_io import torch_dtype

    with pytest.raises(InvalidInputError, match=r"x4\.engine: tensor 'output': expected .*HALF.* got FP8"):
        torch_dtype(FakeDataType("FP8"), "output", "x4.engine")


def test_io_dtypes_are_read_from_a_fake_engine() -> None:
    """Each input's and the output's dtype come from ``get_tensor_dtype``, not an assumed float32."""
    from model_manager.runners.trt_io import read_io

    engine = FakeEngine({"input": ("HALF", PROFILE), "scale": ("INT32", PROFILE)}, ("output", "BF16"))
    io = read_io(engine, TRT, "x4.engine")
    assert io.inputs == ("input", "scale") and io.output == "output"
    assert dict(io.dtypes) == {"input": torch.float16, "scale": torch.int32, "output": torch.bfloat16}
    assert io.profiles["input"] == PROFILE
    with pytest.raises(InvalidInputError, match="tensor 'output': expected .* got FP4"):
        read_io(FakeEngine({"input": ("HALF", PROFILE)}, ("output", "FP4")), TRT, "x4.engine")


def test_the_output_is_bound_in_the_engines_dtype_with_a_fake_engine() -> None:
    """A HALF-output engine gets a float16 buffer of the context's output shape, bound by address."""
    from model_manager.runners.trt_io import bind, read_io

    engine = FakeEngine({"input": ("HALF", PROFILE)}, ("output", "HALF"))
    context = engine.create_execution_context()
    x = torch.zeros(1, 3, 20, 24, dtype=torch.float16)
    out = bind(context, read_io(engine, TRT, "x4.engine"), [x], "cpu")
    assert out.dtype == torch.float16 and tuple(out.shape) == (1, 3, 80, 96)
    assert context.shapes == {"input": (1, 3, 20, 24)}
    assert context.addresses == {"input": x.data_ptr(), "output": out.data_ptr()}


# -- scale (issue 18, defect 5) --------------------------------------------------------------------


def test_from_engine_reads_the_scale_from_a_fake_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A x4 engine's descriptor has scale 4, so the base Runner no longer crops its output to 1x."""
    engine = FakeEngine({"input": ("FLOAT", PROFILE)}, ("output", "FLOAT"))
    descriptor = engine_runner_descriptor(engine, tmp_path, monkeypatch)
    assert descriptor.scale == 4 and descriptor.output_size(20, 30) == (80, 120)
    assert [s.name for s in descriptor.inputs] == ["input"] and descriptor.output.name == "output"
    same = FakeEngine({"input": ("FLOAT", PROFILE)}, ("output", "FLOAT"), lambda h, w: (h, w))
    assert engine_runner_descriptor(same, tmp_path, monkeypatch).scale == 1


def test_from_engine_refuses_a_non_integer_scale_with_a_fake_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output H, W that are not the input's times one integer: an InvalidInputError quoting both."""
    engine = FakeEngine({"input": ("FLOAT", PROFILE)}, ("output", "FLOAT"), lambda h, w: (h * 2, w * 3))
    with pytest.raises(InvalidInputError, match=r"got input \(1, 3, 64, 64\) -> output \(1, 3, 128, 192\)"):
        engine_runner_descriptor(engine, tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("inp", "out", "scale"),
    [
        ((1, 3, 64, 48), (1, 3, 128, 96), 2),
        ((1, 3, 64, 48), (1, 3, 64, 48), 1),
        ((1, 3, 64, 48), (1, 3, 96, 72), None),  # x1.5
        ((1, 3, 64, 48), (1, 3, 32, 24), None),  # a downscale
        ((1, 3, 64, 48), (1, 3, 128, 144), None),  # x2 on H, x3 on W
        ((1, 3, 64, 48), (1, 3, -1, -1), None),  # unresolved
        ((1, 3, 64, 48), (10,), None),
    ],
)
def test_the_scale_is_one_integer_at_least_one_on_both_axes(
    inp: Shape, out: Shape, scale: int | None
) -> None:
    from model_manager.runners.trt_io import scale_from_shapes

    if scale is not None:
        assert scale_from_shapes("m.engine", inp, out) == scale
    else:
        with pytest.raises(InvalidInputError, match=r"m\.engine: expected .* integer >= 1, got input"):
            scale_from_shapes("m.engine", inp, out)


# -- TensorRT's False returns (issue 18, defect 5) -------------------------------------------------


def test_a_refused_input_shape_is_a_backend_error_with_a_fake_engine() -> None:
    """``set_input_shape`` -> False names the input, the shape and what TensorRT logged."""
    from model_manager.runners.trt_io import bind, read_io

    engine = FakeEngine({"input": ("FLOAT", PROFILE)}, ("output", "FLOAT"))
    context = engine.create_execution_context()
    context.refuse_shape = {"input"}
    logger = FakeLogger("IExecutionContext::setInputShape: dimensions out of range")
    with pytest.raises(
        BackendError,
        match=r"set the shape of input 'input' of x4\.engine to \(1, 3, 20, 24\): .*out of range",
    ):
        bind(context, read_io(engine, TRT, "x4.engine"), [torch.zeros(1, 3, 20, 24)], "cpu", logger)
    assert "output" not in context.addresses


@pytest.mark.parametrize("refused", ["input", "output"])
def test_a_refused_tensor_address_is_a_backend_error_with_a_fake_engine(refused: str) -> None:
    """``set_tensor_address`` -> False for an input or the output names it, its shape and dtype."""
    from model_manager.runners.trt_io import bind, read_io

    engine = FakeEngine({"input": ("FLOAT", PROFILE)}, ("output", "HALF"))
    context = engine.create_execution_context()
    context.refuse_address = {refused}
    shape = "(1, 3, 20, 24), torch.float32" if refused == "input" else "(1, 3, 80, 96), torch.float16"
    with pytest.raises(BackendError, match=rf"set the address of {refused} '{refused}' .*{re.escape(shape)}"):
        bind(context, read_io(engine, TRT, "x4.engine"), [torch.zeros(1, 3, 20, 24)], "cpu")


def test_a_refused_opt_shape_in_from_engine_is_a_backend_error_with_a_fake_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the scale sets the opt shapes: a refusal there is a BackendError, not a bad scale."""
    engine = FakeEngine({"input": ("FLOAT", PROFILE)}, ("output", "FLOAT"))
    refusing = FakeContext(engine)
    refusing.refuse_shape = {"input"}
    monkeypatch.setattr(engine, "create_execution_context", lambda: refusing)
    with pytest.raises(
        BackendError, match=r"input 'input' of model\.engine to \(1, 3, 64, 64\): no error was"
    ):
        engine_runner_descriptor(engine, tmp_path, monkeypatch)


def test_a_failure_reports_what_tensorrt_logged_once() -> None:
    """The logged errors go into the first BackendError after them, not into every later one."""
    from model_manager.runners.trt_session import failure

    logger = FakeLogger("first", "second")
    assert str(failure("run x", logger)) == "tensorrt failed to run x: first; second"
    assert str(failure("run x", logger)) == "tensorrt failed to run x: no error was logged"
    assert str(failure("run x", None)) == "tensorrt failed to run x: no error was logged"


# -- on a GPU (issue 18, defects 3 and 5): skipped without CUDA and TensorRT / onnxruntime-gpu ----


def _half_io_x2_engine(tmp_path: Path) -> Path:
    """An engine with float16 I/O: nearest-neighbour x2 (ONNX Resize), profile 1..2 x 3 x 16..64."""
    import onnx
    from onnx import TensorProto, helper

    from model_manager.optim.trt_engine import TensorRTConfig, engine_from_onnx_file
    from model_manager.optim.trt_profiles import InputProfile

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT16, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT16, ["batch", 3, "h", "w"])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 2.0, 2.0])
    resize = helper.make_node(
        "Resize",
        ["input", "", "scales"],
        ["output"],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    graph = helper.make_graph([resize], "x2", [x], [y], initializer=[scales])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "x2.onnx")
    profile = InputProfile("input", (1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64))
    engine_from_onnx_file(tmp_path / "x2.onnx", tmp_path / "x2.engine", [profile], TensorRTConfig("fp16"))
    return tmp_path / "x2.engine"


def _x2(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


@pytest.mark.gpu
@needs_gpu_and_trt
def test_a_half_io_engine_takes_and_gives_float32_at_its_scale_on_a_gpu(tmp_path: Path) -> None:
    """float32 in (numpy and CUDA), float16 I/O engine, float32 out at 2x: plain and graphed."""
    from model_manager.runners.trt_runner import TrtRunner

    runner = TrtRunner.from_engine(_half_io_x2_engine(tmp_path))
    assert runner.descriptor.scale == 2
    x = (torch.arange(1 * 3 * 24 * 40, dtype=torch.float32).reshape(1, 3, 24, 40) % 64) / 8
    got = runner(x.numpy())
    assert got.dtype == np.float32 and got.shape == (1, 3, 48, 80)
    np.testing.assert_array_equal(got, _x2(x).numpy())
    on_device = runner(x.cuda())
    assert on_device.is_cuda and on_device.dtype == torch.float32
    graphed = TrtRunner(runner.path, runner.descriptor, runner.info, cuda_graph=True)
    np.testing.assert_array_equal(graphed(x.numpy()), got)
    runner.close()
    graphed.close()


@pytest.mark.gpu
@needs_gpu_and_trt
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_the_engine_is_ordered_with_the_callers_stream_on_a_gpu(tmp_path: Path, cuda_graph: bool) -> None:
    """The engine waits for the caller's late kernel, and the caller's stream waits for a slow engine."""
    from model_manager.runners.trt_runner import TrtRunner

    engine = _half_io_x2_engine(tmp_path)
    probe = TrtRunner.from_engine(engine)
    runner = TrtRunner(engine, probe.descriptor, probe.info, cuda_graph=cuda_graph)
    probe.close()
    assert runner._stream != torch.cuda.current_stream()
    caller = torch.cuda.Stream()
    x = torch.zeros(1, 3, 32, 32, device="cuda")
    for value in (1.0, 2.0):
        with torch.cuda.stream(caller):
            torch.cuda._sleep(100_000_000)  # the input is written late on the caller's stream
            x.fill_(value)
            with torch.cuda.stream(runner._stream):
                torch.cuda._sleep(100_000_000)  # and the runner's stream is busy before the engine
            got = runner(x).clone()  # read on the caller's stream right away
        caller.synchronize()
        assert torch.equal(got, torch.full((1, 3, 64, 64), value, device="cuda"))
    runner.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ort_cuda_io_binding_waits_for_the_callers_stream_on_a_gpu(tmp_path: Path) -> None:
    """ONNX Runtime's CUDA provider reads an input written late on torch's current stream."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu")
    from model_manager.models import all_architectures
    from model_manager.optim.onnx_export import ONNXExporter
    from model_manager.runners import OrtRunner

    loaded = all_architectures()["ESPCN"].create(seed=0)
    d = loaded.descriptor
    path = (
        ONNXExporter()
        .export(loaded.module, [torch.rand(1, 3, 32, 32)], tmp_path / "m.onnx", descriptor=d)
        .path
    )
    runner = OrtRunner(
        path, d, RunnerInfo(d.model_type, "espcn", "onnx", "onnxruntime", "cuda", "fp32"), device="cuda"
    )
    assert runner.info.device == "cuda"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = loaded.module(x)
    staged = torch.zeros(1, 3, 32, 32, device="cuda")
    caller = torch.cuda.Stream()
    with torch.cuda.stream(caller):
        torch.cuda._sleep(200_000_000)
        staged.copy_(x.cuda())
        got = runner(staged).cpu()
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=0)  # TF32 convolutions
