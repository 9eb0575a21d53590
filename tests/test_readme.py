"""README keeps its promises: the Quick start runs as written, the strategy list is the table's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model_manager.optim.strategies import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def _between(marker: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- {marker} -->\n(.*?)<!-- /{marker} -->", text, re.S)
    assert match, f"README has no <!-- {marker} --> block"
    return match.group(1)


def test_the_strategy_list_in_readme_is_the_table() -> None:
    assert _between("strategies").strip() == markdown_table().strip()


@pytest.mark.slow
def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    """A first ``auto`` build of the default model into an empty cache (HOME in a temporary folder)."""
    code = _between("quick-start").strip().removeprefix("```python").removesuffix("```")
    env = {**os.environ, "HOME": str(tmp_path), "MODEL_MANAGER_DEVICE": "cpu"}
    env.pop("MODEL_MANAGER_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "chelsea_x2.png").is_file()
    assert (tmp_path / ".cache" / "model_manager" / "super_resolution").is_dir()
    strategy = done.stdout.split()[0]
    assert strategy in {"none", *(line.split("`")[1] for line in markdown_table().splitlines()[2:])}
