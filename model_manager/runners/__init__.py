"""Runners: one interface over every backend. Later backends (ONNX Runtime, OpenVINO, TensorRT) join here."""

from .base import Runner, RunnerInfo
from .ort_runner import OrtRunner
from .ov_runner import OvRunner
from .torch_runner import TorchRunner

__all__ = ["OrtRunner", "OvRunner", "Runner", "RunnerInfo", "TorchRunner"]
