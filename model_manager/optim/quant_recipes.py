"""Per-architecture static INT8 choices: calibration method and the nodes kept in float.

Measured on seeded weights at 256x256 (see benchmarks/quantization.py); the quality gate still
decides on every build. IFNet keeps its warp (GridSample), resizes and each block's flow head in
float: flows quantized to 8 bits misplace whole pixels.
"""

from __future__ import annotations

from .quantize_onnx import StaticInt8Settings

_IFNET = StaticInt8Settings(
    method="percentile",
    exclude_op_types=("GridSample", "Resize", "Sigmoid"),
    exclude_nodes=("/block*/lastconv/*",),
)

RECIPES: dict[str, StaticInt8Settings] = {
    "SRVGGNetCompact": StaticInt8Settings(method="percentile"),
    "IFNet": _IFNET,
    "IFNet-heavy": _IFNET,
}


def recipe_for(architecture: str) -> StaticInt8Settings:
    """The static INT8 settings for an architecture (defaults: MinMax, everything quantized)."""
    return RECIPES.get(architecture, StaticInt8Settings())
