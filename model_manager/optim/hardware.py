"""What this machine offers: CUDA device, TensorRT, ONNX Runtime providers, CPU features."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
from .strategies import extra_installed

_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Hardware:
    """A snapshot of the devices and libraries strategy decisions depend on."""

    cuda: bool
    gpu_name: str | None = None
    capability: tuple[int, int] | None = None
    tensorrt: bool = False
    openvino: bool = False
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    cpu: str = ""
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cores: int = 1
    cxx_compiler: str | None = None
    """The C++ compiler AOTInductor would run (None: ``aoti`` cannot be built here)."""

    @property
    def native_bf16(self) -> bool:
        """BF16 in hardware (AVX-512 BF16 or AMX); elsewhere BF16 is emulated and slow."""
        return bool({"avx512_bf16", "amx_bf16"} & self.cpu_flags)

    def has_extra(self, extra: str) -> bool:
        """Whether an optional extra of the strategy table (``openvino``, ``tensorrt``) is installed."""
        return bool(getattr(self, extra, False))

    @property
    def vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.cpu_flags)

    def cpu_key(self) -> dict[str, Any]:
        """What a measured CPU decision depends on (part of the cache key)."""
        return {"kind": "cpu", "cpu": self.cpu, "cores": self.cores, "flags": sorted(self.cpu_flags)}

    def gpu_key(self) -> dict[str, Any]:
        """What a GPU artifact depends on: device name and compute capability."""
        return {"kind": "cuda", "gpu": self.gpu_name, "capability": list(self.capability or ())}


@cache
def probe_hardware(cuda_index: int = 0) -> Hardware:
    """Probe once per process (and CUDA device); imports nothing heavy beyond torch (the extras only
    by spec lookup). The GPU described is ``cuda:cuda_index``; one that does not exist is an error."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda and cuda_index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise BackendUnavailableError(
            f"expected CUDA device cuda:{cuda_index}, but this machine has {count} "
            f"(cuda:0 .. cuda:{count - 1})"
        )
    name = torch.cuda.get_device_name(cuda_index) if cuda else None
    cap = tuple(torch.cuda.get_device_capability(cuda_index)) if cuda else None
    return Hardware(
        cuda=cuda,
        gpu_name=name,
        capability=cap,  # type: ignore[arg-type]
        tensorrt=extra_installed("tensorrt"),
        openvino=extra_installed("openvino"),
        ort_providers=_ort_providers(),
        cpu=cpu_model(),
        cpu_flags=_cpu_flags(),
        cores=os.cpu_count() or 1,
        cxx_compiler=cxx_compiler(),
    )


def cxx_compiler() -> str | None:
    """The C++ compiler AOTInductor would use (``CXX``, else ``g++``; ``clang++`` on macOS), if it runs.

    The same search as inductor's default (``torch._inductor.config.cpp.cxx``) without importing
    inductor, so probing the machine stays cheap.
    """
    name = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
    path = shutil.which(name)
    if path is None:
        return None
    try:
        subprocess.run([path, "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return path


def _ort_providers() -> tuple[str, ...]:
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return frozenset(f for f in _CPU_FLAGS_OF_INTEREST if f in flags)
    except OSError:
        pass
    return frozenset()
