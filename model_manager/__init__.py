"""model_manager: fast, verified inference for image and video models behind one Runner interface.

Public names only; heavy optional backends (TensorRT, OpenVINO, PyAV) are imported lazily.
"""

from .config import ModelConfig, QualityGates
from .descriptor import ModelDescriptor, ShapeProfile, TensorSpec
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
from .optimization import Optimization
from .registry import ModelEntry, ModelRegistry
from .runners import OrtRunner, Runner, RunnerInfo, TorchRunner

__version__ = "0.1.0"

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
    "Optimization",
    "OrtRunner",
    "QualityGateError",
    "QualityGates",
    "Runner",
    "RunnerClosedError",
    "RunnerInfo",
    "ShapeProfile",
    "StateDictMismatchError",
    "StrategyUnavailableError",
    "TensorSpec",
    "TorchRunner",
    "UnknownModelError",
    "UnknownStrategyError",
    "UnsafeCheckpointError",
    "UnsupportedArchitectureError",
    "WeightsUnavailableError",
    "__version__",
]
