"""The reliability suite: every test here is marked ``reliability``; ``soak`` ones run on request.

``pytest -q`` (CI) runs the fast scenarios and skips the ``soak`` ones with a reason;
``pytest -m reliability`` runs all of them (the README's "Reliability" figures come from it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full = "reliability" in (config.getoption("-m") or "")
    skip = pytest.mark.skip(reason="long reliability scenario: run with `pytest -m reliability`")
    for item in items:
        if _HERE not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.reliability)
        if item.get_closest_marker("soak") is not None and not full:
            item.add_marker(skip)
