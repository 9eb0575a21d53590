"""The embedded default models: trained here from photos a dependency ships, with model cards.

``spec`` says what each default is, ``degrade`` / ``sketch`` / ``motion`` define the tasks,
``evaluation`` measures held-out quality against each task's baseline, and ``training`` +
``scripts/train_defaults.py`` reproduce the shipped weights.
"""

from .spec import DEFAULT_MODELS, HELD_OUT, DefaultModel, default_model

__all__ = ["DEFAULT_MODELS", "HELD_OUT", "DefaultModel", "default_model"]
