"""ModelConfig: defaults, environment overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_manager import ModelConfig, ModelInputError
from model_manager.config import default_cache_dir


def test_default_cache_dir_follows_xdg_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODEL_MANAGER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "model_manager"
    monkeypatch.setenv("MODEL_MANAGER_CACHE_DIR", str(tmp_path / "mine"))
    assert ModelConfig().cache_dir == tmp_path / "mine"


def test_from_env_reads_variables_and_overrides_win(tmp_path: Path) -> None:
    env = {
        "MODEL_MANAGER_CACHE_DIR": str(tmp_path),
        "MODEL_MANAGER_DEVICE": "cpu",
        "MODEL_MANAGER_NUM_THREADS": "2",
        "MODEL_MANAGER_MAX_LOADED": "3",
    }
    cfg = ModelConfig.from_env(env, max_loaded_models=5)
    assert (cfg.cache_dir, cfg.device, cfg.num_threads, cfg.max_loaded_models) == (tmp_path, "cpu", 2, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "device must be"),
        ({"num_threads": 0}, "num_threads must be"),
        ({"max_loaded_models": 0}, "max_loaded_models must be"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        ModelConfig(**kwargs)


def test_bad_env_integer_names_the_variable() -> None:
    with pytest.raises(ModelInputError, match="MODEL_MANAGER_NUM_THREADS must be an integer, got 'two'"):
        ModelConfig.from_env({"MODEL_MANAGER_NUM_THREADS": "two"})
