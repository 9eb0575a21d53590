"""``python -m model_manager.cli``: the same as the ``model-manager`` console script."""

import sys

from .app import main

sys.exit(main())
