"""The tasks the defaults learn: degradation, pencil-sketch filter, synthetic motion, and the training loop."""

from __future__ import annotations

import builtins
from dataclasses import replace

import pytest
import torch

from model_manager.defaults import default_model
from model_manager.defaults.degrade import bicubic_upscale, downscale
from model_manager.defaults.evaluation import photo
from model_manager.defaults.motion import Motion, linear_blend, triplet, view
from model_manager.defaults.sketch import pencil_sketch
from model_manager.defaults.training import SETTINGS, motion_batch, train
from model_manager.defaults.training_data import PatchSampler, load_training_photos
from model_manager.optim.quality import psnr


def test_downscale_then_bicubic_is_close_but_lossy() -> None:
    hr = photo("astronaut")
    lr = downscale(hr, 2)
    assert lr.shape[-2:] == (128, 128)
    up = bicubic_upscale(lr, 2)
    assert up.shape == hr.shape
    assert 22.0 < psnr(hr, up) < 40.0


def test_downscale_names_the_size_it_cannot_divide() -> None:
    with pytest.raises(ValueError, match="150x226 is not a multiple of the scale 4"):
        downscale(photo("chelsea"), 4)


def test_sketch_is_deterministic_in_range_and_changes_the_photo() -> None:
    image = photo("coffee")
    a, b = pencil_sketch(image), pencil_sketch(image)
    assert torch.equal(a, b)
    assert a.shape == image.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert psnr(image, a) < 30.0  # a visible style, not a near-identity


def test_sketch_rejects_a_grey_batch_with_the_shape_it_got() -> None:
    with pytest.raises(ValueError, match=r"expects a \(N,3,H,W\).*\(1, 1, 8, 8\)"):
        pencil_sketch(torch.zeros(1, 1, 8, 8))


def test_still_motion_gives_the_untouched_centre_crop() -> None:
    image = photo("astronaut")
    frame = view(image, Motion(), 0.0, (192, 192))
    assert torch.allclose(frame, image[..., 32:224, 32:224], atol=1e-5)


def test_motion_moves_the_frames_and_blending_them_is_blurry() -> None:
    image = photo("astronaut")
    f0, mid, f1 = triplet(image, Motion(8.0, -4.0, 3.0, 1.05), (192, 192))
    assert psnr(f0, f1) < 25.0
    assert psnr(mid, linear_blend(f0, f1)) < 30.0


def test_training_is_seeded_on_real_photos() -> None:
    """Two short runs on the shipped photos (no scikit-image needed) give identical weights."""
    spec = default_model("super_resolution", "espcn-x2")
    photos = [photo(n) for n in ("coffee", "rocket")]
    settings = replace(SETTINGS[spec.key], steps=4, batch=2, patch=32, warmup=2)
    first = train(spec, photos, settings, progress=False)
    second = train(spec, photos, settings, progress=False)
    for (k, a), b in zip(first.module.state_dict().items(), second.module.state_dict().values()):
        assert torch.equal(a, b), k


def test_motion_batches_pair_frames_with_their_timestep_and_a_moved_target() -> None:
    sampler = PatchSampler([photo("coffee"), photo("rocket")], torch.Generator().manual_seed(0))
    (f0, f1, t), target = motion_batch(sampler, 6, 64)
    assert f0.shape == f1.shape == target.shape == (6, 3, 64, 64)
    assert t.shape == (6, 1, 1, 1) and float(t.min()) >= 0.1 and float(t.max()) <= 0.9
    for i in range(6):
        assert not torch.allclose(target[i], f0[i]) and not torch.allclose(target[i], f1[i])


def test_flat_crops_are_drawn_again() -> None:
    flat = torch.full((1, 3, 64, 64), 0.5)
    textured = photo("astronaut")
    sampler = PatchSampler([flat, textured], torch.Generator().manual_seed(0), tint=0.0)
    for _ in range(10):
        assert float(sampler.patch(32).std()) >= sampler.min_std


def test_sketch_ignores_global_brightness_and_contrast_as_transformernet_must() -> None:
    """TransformerNet's first InstanceNorm makes it blind to a * x + c; auto-levels makes the target blind too."""
    from model_manager.models import all_architectures

    image = photo("astronaut")
    assert torch.allclose(pencil_sketch(image), pencil_sketch(0.6 * image + 0.2), atol=1e-4)
    net = all_architectures()["TransformerNet"].build(channels=3, width=8, num_res=1).eval()
    with torch.no_grad():
        assert torch.allclose(net(image * 255), net((0.6 * image + 0.2) * 255), atol=1e-2)


def test_missing_scikit_image_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_skimage(name: str, *args, **kwargs):
        if name.startswith("skimage"):
            raise ImportError("No module named 'skimage'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_skimage)
    with pytest.raises(ImportError, match=r"model_manager\[train\]"):
        load_training_photos()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_bilinear_start_computes_bilinear_upscaling(scale: int) -> None:
    import torch.nn.functional as F

    from model_manager.defaults.training import bilinear_start
    from model_manager.models import all_architectures

    module = all_architectures()["ESPCN"].build(channels=3, upscale=scale, feat1=16, feat2=16, feat3=8)
    bilinear_start(module, scale)
    with torch.no_grad():
        module.conv4.weight[:, 3:] = 0.0  # only the carried R, G, B: exactly bilinear
        x = photo("chelsea")
        out = module(x)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    b = 2 * scale  # the zero padding of the convs differs from bilinear's edge clamp at the border
    assert (out - ref)[..., b:-b, b:-b].abs().max() < 1e-4
