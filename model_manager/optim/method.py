"""What the build does, as far as its artifacts depend on it: part of every cache key.

The key already holds the weights, the model, the settings and every toolchain version; this
holds the choices in the build's own code that change what it produces (how photo crops are cut,
how many crops the float-layer search scores, how it gives float layers back to INT8, how
OpenVINO models are compiled: that changes what ``auto`` measures and serves), so a cache
written by a build that chose differently is not served as if it were this one's.
"""

from __future__ import annotations

from typing import Any

from ..runners.ov_runner import STATIC_SHAPES
from ..samples import CROP_METHOD
from .int8_steps import SEARCH_ITEMS
from .mixed_precision import GIVE_BACK

OPENVINO_COMPILE = f"static shapes for the first {STATIC_SHAPES} input shapes, then dynamic"

BUILD_METHOD: dict[str, Any] = {
    "crops": CROP_METHOD,
    "int8_search_items": SEARCH_ITEMS,
    "int8_give_back": GIVE_BACK,
    "openvino_compile": OPENVINO_COMPILE,
}
