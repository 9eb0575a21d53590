"""A plugin architecture whose ONNX export calls ``os.abort()``: a builder that dies natively.

Eager inference works, so the application can load and run it; exporting it (which only ever
happens in the build process) aborts that process. Registered on import, like any third-party
architecture; the build process imports this module by name to rebuild the model. Test modules
must not import it at collection time: tests that export every registered architecture would
then abort the test run (test_builder_crash.py registers it for one test only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from model_manager.descriptor import ModelDescriptor, TensorSpec, image_profile
from model_manager.models.base import Architecture, KeyCondition, StateDict, register_architecture

ARCH_ID = "AbortOnExport"


class AbortOnExport(nn.Module):
    """A 3x3 convolution that aborts the process when traced for export."""

    def __init__(self) -> None:
        super().__init__()
        self.abort_body = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            os.abort()  # SIGABRT, as a crashing native exporter would
        return self.abort_body(x).clamp(0, 1)


@register_architecture
class AbortOnExportArch(Architecture):
    """Detected by its one key ``abort_body.weight``."""

    id = ARCH_ID
    model_type = "super_resolution"
    detect = KeyCondition.has_all("abort_body.weight")

    def hyperparameters(self, state_dict: StateDict) -> dict[str, Any]:
        return {}

    def build(self, **hp: Any) -> nn.Module:
        return AbortOnExport()

    def descriptor(self, hp: Mapping[str, Any]) -> ModelDescriptor:
        return ModelDescriptor(
            model_type=self.model_type,
            architecture=self.id,
            inputs=(TensorSpec("input", ("batch", 3, "height", "width")),),
            output=TensorSpec("output", ("batch", 3, "height", "width")),
            profile=image_profile(("input",), 3, size_min=8, multiple=1, opt=64, max_size=256, max_batch=2),
        )
