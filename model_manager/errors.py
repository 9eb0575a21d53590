"""The exception types users catch, in one tree rooted in :class:`ModelManagerError`.

::

    ModelManagerError
    ├── ModelLookupError (LookupError)        unknown type, name, strategy or architecture
    │   ├── UnknownModelError                  no model registered under that type / name
    │   ├── UnknownStrategyError               optimization name not known
    │   └── UnsupportedArchitectureError       no known architecture matched (also a CheckpointError)
    ├── ModelInputError (ValueError)           bad caller input, names what was expected and what came
    │   ├── InvalidInputError                  tensors given to a Runner
    │   └── InvalidNameError                   a model or type name that is not a safe identifier
    ├── CheckpointError                        a checkpoint file that cannot be read or loaded
    │   ├── UnsafeCheckpointError              holds pickled objects other than tensors
    │   └── StateDictMismatchError             strict load failed: lists missing / unexpected keys
    ├── WeightsUnavailableError                a registered model whose weights are not on this machine
    ├── ExportError                            a model that cannot be exported (names the operator)
    ├── EngineBuildError                       an artifact build failed or its build process died
    │   └── QualityGateError                   a built artifact is worse than the gate against FP32
    ├── CacheError                             the artifact cache cannot be used as asked
    │   ├── CorruptEntryError                  an entry failed verification (it is moved aside)
    │   ├── CacheWriteError                    no space, a file size limit or a read-only disk mid-build
    │   └── CacheLockTimeout (TimeoutError)    another process held a build lock for too long
    ├── BackendError                           a backend (onnxruntime, tensorrt) failed, raised from its cause
    ├── StrategyUnavailableError               a known strategy this machine or build cannot serve
    ├── BackendUnavailableError (ImportError)  an optional backend (tensorrt, openvino, av) is not installed
    └── RunnerClosedError (RuntimeError)       a Runner used after close()

Backend exceptions are translated in one place and re-raised ``from`` their cause.
"""

from __future__ import annotations

from collections.abc import Iterable


class ModelManagerError(Exception):
    """Root of every error this library raises on purpose."""


class ModelLookupError(ModelManagerError, LookupError):
    """A name (model, type, strategy, architecture) that is not known."""


class UnknownModelError(ModelLookupError):
    """No model is registered under the requested type and name."""


class UnknownStrategyError(ModelLookupError):
    """An optimization strategy name that is not known; the message lists the valid ones."""


class ModelInputError(ModelManagerError, ValueError):
    """Bad input from the caller; the message says what was expected and what came."""


class InvalidInputError(ModelInputError):
    """Tensors handed to a Runner that do not match its input spec."""


class InvalidNameError(ModelInputError):
    """A model type or name that is not a safe identifier (it becomes a cache path)."""


class CheckpointError(ModelManagerError):
    """A checkpoint file that cannot be read, or whose contents cannot be loaded."""


class UnsupportedArchitectureError(ModelLookupError, CheckpointError):
    """A checkpoint whose keys matched none of the known architectures."""

    def __init__(self, message: str, tried: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.tried = tuple(tried)


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that needs a full unpickle (objects other than tensors); it was not executed."""


class StateDictMismatchError(CheckpointError):
    """A strict load failed; ``missing`` and ``unexpected`` name the keys."""

    def __init__(self, message: str, missing: Iterable[str] = (), unexpected: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)


class WeightsUnavailableError(ModelManagerError):
    """A registered model whose weights are not on this machine (register the checkpoint first).

    ``model`` is ``type/name`` and ``needs`` the file it wants (e.g. "the file RealESRGAN_x4plus.pth
    (Real-ESRGAN)"), so a front end can say how to give it (the CLI: ``--checkpoint FILE``).
    """

    def __init__(self, message: str, model: str = "", needs: str = "") -> None:
        super().__init__(message)
        self.model = model
        self.needs = needs


class ExportError(ModelManagerError):
    """A model that cannot be exported to ONNX; ``operator`` names the culprit when known."""

    def __init__(self, message: str, operator: str | None = None) -> None:
        super().__init__(message)
        self.operator = operator


class EngineBuildError(ModelManagerError):
    """Building an artifact failed, or the build process died (crash, abort, out of memory)."""


class QualityGateError(EngineBuildError):
    """A built artifact's output is further from the FP32 reference than the quality gate allows."""


class CacheError(ModelManagerError):
    """The artifact cache cannot be used as asked."""


class CorruptEntryError(CacheError):
    """A cache entry failed verification; it has been moved aside and will be rebuilt."""


class CacheWriteError(CacheError):
    """A build could not write its files (disk full, file size limit, quota); nothing was published."""


class CacheLockTimeout(CacheError, TimeoutError):
    """Another process held a build lock for longer than the configured timeout."""


class BackendError(ModelManagerError):
    """A backend failed while loading or running an artifact; the backend's exception is the cause."""


class StrategyUnavailableError(ModelManagerError):
    """A known optimization strategy that this machine or this build cannot serve; says why."""


class BackendUnavailableError(ModelManagerError, ImportError):
    """An optional backend (TensorRT, OpenVINO, PyAV) that is not installed or has no device."""


class RunnerClosedError(ModelManagerError, RuntimeError):
    """A Runner was used after ``close()``."""
