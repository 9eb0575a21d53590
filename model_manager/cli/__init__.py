"""The ``model-manager`` command line (``model_manager.cli:main``, the console script).

One module per concern: ``parser`` (arguments), ``app`` (dispatch, logging, exit codes),
``display`` (build progress on stderr), ``text`` (results for a person), and one module per
command group: ``models`` (list, samples, inspect), ``run``, ``optimize``, ``bench``, ``demo``,
``cache``. Only ``parser``, ``app``, ``display``, ``text`` and ``outcome`` load with ``--help``;
a command's module (and torch with it) is imported when that command runs.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
