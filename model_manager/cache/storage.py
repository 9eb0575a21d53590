"""Telling "the disk refused the write" apart from other build failures, wherever it is wrapped.

Exporters and quantizers wrap an ``OSError`` in their own exceptions; a full disk, a file size
limit or a quota is not a reason to try the next candidate (it fails them all) but a clear
:class:`CacheWriteError` for the operator, raised from the original error.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import CacheWriteError

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})


def storage_cause(exc: BaseException) -> OSError | None:
    """The disk-refused ``OSError`` in ``exc``'s cause / context chain, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def write_error(what: str, where: Path | str, cause: OSError) -> CacheWriteError:
    """A CacheWriteError naming what was being written, where, and what the disk said."""
    return CacheWriteError(
        f"cannot write {what} in {where}: {cause.strerror or cause} (errno {cause.errno}); "
        "free space, raise the file size limit or point cache_dir elsewhere"
    )
