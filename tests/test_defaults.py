"""The shipped default models: real trained weights that beat their baselines on held-out photos."""

from __future__ import annotations

import pytest
import torch

from model_manager.defaults import DEFAULT_MODELS, HELD_OUT, DefaultModel
from model_manager.defaults.cards import read_metrics
from model_manager.defaults.evaluation import score_image
from model_manager.registry import MODEL_TYPES, ModelRegistry

# Numbers are recomputed from the shipped weights; other CPUs / torch builds may round differently.
PSNR_TOLERANCE_DB = 0.05

IDS = [spec.key for spec in DEFAULT_MODELS]


def _load(spec: DefaultModel) -> torch.nn.Module:
    return ModelRegistry.with_builtins().get(spec.model_type, spec.name).load().module


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=IDS)
def test_shipped_weights_reach_their_card_numbers_and_beat_the_baseline(spec: DefaultModel) -> None:
    index = HELD_OUT.index("astronaut")
    recorded = next(s for s in read_metrics(spec)["held_out"] if s["image"] == "astronaut")
    score = score_image(spec, _load(spec), index)
    # The target and baseline are recomputed too: they must be what the card was measured against.
    assert score.baseline_psnr == pytest.approx(recorded["baseline_psnr"], abs=PSNR_TOLERANCE_DB)
    assert score.model_psnr == pytest.approx(recorded["model_psnr"], abs=PSNR_TOLERANCE_DB)
    if spec.task != "sketch":  # the sketch baseline (the input) is a reference point, not a rival
        assert score.model_psnr > score.baseline_psnr + 0.3, score
    assert score.model_ssim > score.baseline_ssim, score


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=IDS)
def test_card_states_the_measured_numbers(spec: DefaultModel) -> None:
    metrics = read_metrics(spec)
    card = spec.card_path().read_text()
    assert f"**{metrics['mean']['model_psnr']:.2f}**" in card
    assert f"**{metrics['mean']['baseline_psnr']:.2f}**" in card
    assert metrics["weights_bytes"] == spec.weights_path().stat().st_size
    assert {s["image"] for s in metrics["held_out"]} == set(HELD_OUT)


def test_mean_quality_claims_hold_in_the_cards() -> None:
    for spec in DEFAULT_MODELS:
        mean = read_metrics(spec)["mean"]
        if spec.task == "sketch":
            # Closer to the sketch than the unstyled photo is: the model learnt the style.
            assert mean["model_psnr"] > mean["baseline_psnr"] + 3.0, (spec.key, mean)
        else:
            assert mean["model_psnr"] > mean["baseline_psnr"], (spec.key, mean)


def test_default_name_resolves_to_the_trained_model_of_each_type() -> None:
    registry = ModelRegistry.with_builtins()
    for model_type in MODEL_TYPES:
        entry = registry.get(model_type, "default")
        assert entry.weights.kind == "package"
        assert entry.weights.path is not None and entry.weights.path.is_file()
        assert entry.name in {s.name for s in DEFAULT_MODELS if s.model_type == model_type and s.default}


def test_shipped_weights_fit_the_15_mb_budget() -> None:
    total = sum(spec.weights_path().stat().st_size for spec in DEFAULT_MODELS)
    assert total <= 15 * 1024 * 1024, total


def test_list_marks_the_defaults_as_trained() -> None:
    rows = {(e.model_type, e.name): e.to_dict() for e in ModelRegistry.with_builtins().entries()}
    for spec in DEFAULT_MODELS:
        row = rows[(spec.model_type, spec.name)]
        assert row["weights"].startswith("shipped, trained here")
        assert row["default"] == spec.default
