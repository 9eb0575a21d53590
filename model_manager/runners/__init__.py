"""Runners: one interface over every backend. Later backends (ONNX Runtime, OpenVINO, TensorRT) join here."""

from .base import Runner, RunnerInfo
from .torch_runner import TorchRunner

__all__ = ["Runner", "RunnerInfo", "TorchRunner"]
