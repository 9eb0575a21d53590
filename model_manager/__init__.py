"""model_manager: fast, verified inference for image and video models behind one Runner interface.

Public names only; heavy optional backends (TensorRT, OpenVINO, PyAV) are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it (the rest of __all__ are the errors); imported on first use
# (PEP 562), so ``import model_manager`` and ``model-manager --help`` do not pay for torch or onnx.
_EXPORTS = {
    "ModelConfig": "config",
    "QualityGates": "config",
    "ModelDescriptor": "descriptor",
    "ShapeProfile": "descriptor",
    "ShapeRange": "descriptor",
    "TensorSpec": "descriptor",
    "ModelManager": "manager",
    "Optimization": "optim.strategies",
    "ModelEntry": "entry",
    "ModelRegistry": "registry",
    "OrtRunner": "runners",
    "Runner": "runners",
    "RunnerInfo": "runners",
    "TorchRunner": "runners",
    "TensorRTOptions": "optim.trt_options",
    "OnnxRuntimeOptions": "optim.ort_options",
}

if TYPE_CHECKING:
    from .config import ModelConfig, QualityGates
    from .descriptor import ModelDescriptor, ShapeProfile, ShapeRange, TensorSpec
    from .entry import ModelEntry
    from .errors import (
        BackendError,
        BackendUnavailableError,
        CacheError,
        CacheLockTimeout,
        CacheWriteError,
        CheckpointError,
        CorruptEntryError,
        EngineBuildError,
        ExportError,
        InvalidInputError,
        InvalidNameError,
        ModelInputError,
        ModelLookupError,
        ModelManagerError,
        QualityGateError,
        RunnerClosedError,
        StateDictMismatchError,
        StrategyUnavailableError,
        UnknownModelError,
        UnknownStrategyError,
        UnsafeCheckpointError,
        UnsupportedArchitectureError,
        WeightsUnavailableError,
    )
    from .manager import ModelManager
    from .optim.ort_options import OnnxRuntimeOptions
    from .optim.strategies import Optimization
    from .optim.trt_options import TensorRTOptions
    from .registry import ModelRegistry
    from .runners import OrtRunner, Runner, RunnerInfo, TorchRunner


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    module = _EXPORTS.get(name, "errors" if name in __all__ and name != "__version__" else None)
    if module is None:
        raise AttributeError(f"module 'model_manager' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CacheError",
    "CacheLockTimeout",
    "CacheWriteError",
    "CheckpointError",
    "CorruptEntryError",
    "EngineBuildError",
    "ExportError",
    "InvalidInputError",
    "InvalidNameError",
    "ModelConfig",
    "ModelDescriptor",
    "ModelEntry",
    "ModelInputError",
    "ModelLookupError",
    "ModelManager",
    "ModelManagerError",
    "ModelRegistry",
    "OnnxRuntimeOptions",
    "Optimization",
    "OrtRunner",
    "QualityGateError",
    "QualityGates",
    "Runner",
    "RunnerClosedError",
    "RunnerInfo",
    "ShapeProfile",
    "ShapeRange",
    "StateDictMismatchError",
    "StrategyUnavailableError",
    "TensorRTOptions",
    "TensorSpec",
    "TorchRunner",
    "UnknownModelError",
    "UnknownStrategyError",
    "UnsafeCheckpointError",
    "UnsupportedArchitectureError",
    "WeightsUnavailableError",
    "__version__",
]
