"""Run a function of a benchmark module in a fresh Python process and get its JSON result back.

The benchmarks that need a fresh process per case (a build, a restart, a process-wide setting)
share this: the child imports ``benchmarks/MODULE.py``, calls ``FUNCTION(*args)`` and prints the
JSON-encoded result on a marked line; the parent returns it, or raises ``ChildFailed`` with the
end of the child's stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MARK = "@@"


class ChildFailed(RuntimeError):
    """The child exited non-zero or printed no result."""


def call_in_child(module: str, function: str, *args: Any) -> dict[str, Any]:
    """``module.function(*args)`` in a new interpreter; its result (a JSON object)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import {module} as m; "
        f"print({MARK!r} + json.dumps(m.{function}(*json.loads(sys.argv[1]))))"
    )
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise ChildFailed(f"{module}.{function}{tuple(args)} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len(MARK) :]))
