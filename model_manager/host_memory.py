"""Keep freed memory in the process, so eager PyTorch on the CPU does not page-fault on every call.

glibc's malloc serves large blocks (a 256x256x64 activation is 16 MB) with ``mmap`` and gives
them back to the OS when freed; worker threads get arenas that shrink the same way. So every
forward pass of an eager model touches fresh pages: IFNet at 1280x704 took 277,000 minor page
faults per call (about 1.1 GB zero-filled) and ran 1.8-2.1x slower than with the memory kept
(``benchmarks/host_memory.py``). A long-running build process hides it (its heap is fragmented,
so nothing is returned), which is why ``auto`` once measured eager faster than it ran in the
application afterwards. The engines (ONNX Runtime, OpenVINO) keep their own buffers and gain
nothing. PyTorch's CPU tuning guide recommends jemalloc / tcmalloc for the same reason; this does
it without a preloaded library: one arena, no ``mmap``, trim the heap only above 1 GiB free.
The price: the process keeps its peak, and one arena fragments more (peak RSS the same at
256x256, 9-40% higher at 1280x704, measured).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
"""``mallopt`` parameters (glibc ``malloc.h``)."""

TRIM_THRESHOLD = 1 << 30
"""Free bytes at the top of the heap before glibc gives any back to the OS."""

POLICY = "glibc malloc: one arena, no mmap, trim above 1 GiB"
"""What ``keep_freed_memory`` sets, as recorded in cache keys and notes."""

_applied: bool | None = None


def _mallopt() -> Any | None:
    """glibc's ``mallopt``, or None where the C library is not glibc (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        return libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None


def keep_freed_memory() -> bool:
    """Set the policy for this process (once; later calls return the first answer).

    True when glibc accepted every setting; False where the C library is not glibc or refused
    (nothing else changes: eager PyTorch is slower there, never wrong). Threads that already
    have an arena keep it, so call this before runners are created (``ModelManager`` does).
    """
    global _applied
    if _applied is not None:
        return _applied
    mallopt = _mallopt()
    if mallopt is None:
        log.debug("not glibc: freed memory goes back to the OS as the C library decides")
        _applied = False
        return False
    ok = all(
        mallopt(p, v) == 1 for p, v in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    )
    log.debug("host memory policy (%s): %s", POLICY, "set" if ok else "refused")
    _applied = ok
    return ok
