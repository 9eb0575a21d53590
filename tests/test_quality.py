"""Quality metrics against the reference, checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model_manager import InvalidInputError
from model_manager.images import to_batch
from model_manager.optim.quality import PSNR_CAP_DB, compare, psnr, ssim
from model_manager.samples import load_sample


@pytest.fixture
def photo() -> np.ndarray:
    return to_batch(load_sample("coffee"))  # 1x3x200x300 in 0..1


def test_psnr_of_a_known_error(photo: np.ndarray) -> None:
    shifted = photo + 0.01  # MSE = 1e-4  ->  40 dB exactly
    assert psnr(photo, shifted) == pytest.approx(40.0, abs=1e-4)  # float32 rounding of +0.01
    assert psnr(photo * 255, shifted * 255, (0.0, 255.0)) == pytest.approx(40.0, abs=1e-4)
    assert psnr(photo, photo) == PSNR_CAP_DB


def test_ssim_is_one_for_identical_and_drops_with_noise(photo: np.ndarray) -> None:
    assert ssim(photo, photo) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(0)
    noisy = (photo + rng.normal(0, 0.05, photo.shape)).astype(np.float32)
    blurred = torch.nn.functional.avg_pool2d(torch.from_numpy(photo), 3, 1, 1).numpy()
    s_noisy, s_blur = ssim(photo, noisy), ssim(photo, blurred)
    assert 0.0 < s_noisy < 0.95 and 0.0 < s_blur < 1.0
    assert ssim(photo, (photo + 0.002).astype(np.float32)) > 0.999  # a tiny offset barely matters


def test_compare_reports_every_metric(photo: np.ndarray) -> None:
    cand = photo.copy()
    cand[0, 0, 10, 10] += 0.5
    q = compare(photo, torch.from_numpy(cand))
    assert q.max_abs_error == pytest.approx(0.5, abs=1e-6)
    assert q.mean_abs_error == pytest.approx(0.5 / photo.size, rel=1e-3)
    assert q.psnr_db == pytest.approx(10 * math.log10(photo.size / 0.25), abs=1e-2)
    assert q.passes(35.0) and not q.passes(q.psnr_db + 1)
    assert set(q.to_dict()) == {"psnr_db", "ssim", "max_abs_error", "mean_abs_error"}


def test_shape_mismatch_is_a_clear_error(photo: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match=r"expected candidate shape \(1, 3, 200, 300\)"):
        compare(photo, photo[..., :100])
