"""Checkpoint files -> canonical state dicts -> detected, strictly loaded architectures.

Files are read without a full unpickle (safetensors, or ``torch.load(weights_only=True)``).
Canonicalisation (as in spandrel) unwraps ``params_ema`` / ``params`` / ``state_dict`` and strips
a prefix such as DDP's ``module.`` only when every key carries it; detection then asks each
architecture's declarative key condition.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .descriptor import ModelDescriptor
from .errors import CheckpointError, UnsafeCheckpointError, UnsupportedArchitectureError
from .models import Architecture, LoadedModel, StateDict, all_architectures

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".bin", ".safetensors")
# Wrappers seen in published files, in the order they are preferred (EMA weights first).
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file without executing code: safetensors, or weights-only torch.load."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file {str(p)!r} does not exist")
    if p.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise CheckpointError(
            f"expected a checkpoint with suffix {', '.join(CHECKPOINT_SUFFIXES)}, got {p.name!r}"
        )
    if p.suffix.lower() == ".safetensors":
        return _read_safetensors(p)
    if not _looks_like_torch_save(p):
        raise CheckpointError(f"cannot read {p.name}: not a torch.save file (no zip or pickle header)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{p.name} holds pickled objects other than tensors; it was refused, not executed "
            f"(only weights-only files are read): {_unpickler_reason(exc)}"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot read {p.name} as a torch.save file: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p.name} holds a {type(obj).__name__}, expected a dict of tensors")
    return dict(obj)


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save writes a zip archive; files from before PyTorch 1.6 are a bare pickle stream."""
    with path.open("rb") as f:
        head = f.read(2)
    return head == b"PK" or head[:1] == b"\x80"


def _unpickler_reason(exc: Exception) -> str:
    """The one line of torch's weights-only refusal that names what was refused."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error" in line or line.startswith("Unsupported"):
            return line.strip()
    return str(exc).splitlines()[0]


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path.name} as safetensors: {exc}") from exc


def canonicalize(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap known wrappers, strip a prefix shared by every key, and check all values are tensors."""
    state: Mapping[str, Any] = obj
    for key in _WRAPPER_KEYS:
        inner = state.get(key)
        if isinstance(inner, Mapping) and inner:
            state = inner
            break
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"expected a state dict of tensors; entries {bad[:10]} are not tensors")
    return strip_common_prefix(dict(state))


def strip_common_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove known prefixes (``module.``, ``_orig_mod.``) while every key carries one."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def detect_architecture(state: StateDict, model_type: str | None = None) -> Architecture:
    """The one architecture whose key condition and shapes match; an error lists what was tried."""
    candidates = [a for a in all_architectures().values() if model_type in (None, a.model_type)]
    found = [a for a in candidates if a.matches(a.prepare_state_dict(state))]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CheckpointError(f"checkpoint is ambiguous: matches {[a.id for a in found]}")
    tried = [f"{a.id} ({a.detect.describe()})" for a in candidates]
    sample = sorted(state)[:8]
    raise UnsupportedArchitectureError(
        f"checkpoint matches no known architecture{'' if model_type is None else ' of ' + model_type}; "
        f"its first keys are {sample}; tried: " + "; ".join(tried),
        tried=[a.id for a in candidates],
    )


def describe_module(module: torch.nn.Module, model_type: str | None = None) -> ModelDescriptor:
    """The descriptor of a live module, detected from its state dict like a checkpoint."""
    state = module.state_dict()
    arch = detect_architecture(state, model_type)
    return arch.descriptor(arch.hyperparameters(arch.prepare_state_dict(state)))


def load_checkpoint(path: str | Path, model_type: str | None = None) -> LoadedModel:
    """Read, canonicalise, detect and strictly load a checkpoint file."""
    state = canonicalize(read_checkpoint(path))
    return detect_architecture(state, model_type).load(state)


def weights_hash(state: StateDict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
