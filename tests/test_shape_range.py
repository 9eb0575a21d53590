"""Shape ranges per load (issue 18): the profile an artifact must take is the caller's to set,
part of the cache key, and the video models' defaults reach a 1080p frame."""

from __future__ import annotations

import numpy as np
import pytest

from model_manager import ModelConfig, ModelInputError, ModelManager, ShapeRange
from model_manager.models import all_architectures
from model_manager.optim.trt_profiles import profiles_from_descriptor


def _descriptor(arch_id: str):
    arch = all_architectures()[arch_id]
    return arch.descriptor(arch.default_hyperparameters())


@pytest.mark.parametrize("arch_id", ["TransformerNet", "IFNet"])
def test_the_video_models_profiles_take_a_1080p_frame_by_default(arch_id: str) -> None:
    """Before: opt 256, max 1024 (style) / 1088 square (interpolation): TensorRT refused 1920 wide."""
    d = _descriptor(arch_id)
    h, w = d.fit_size(1080, 1920)  # what the runner pads a 1080p frame to
    for profile in profiles_from_descriptor(d)[0]:
        if profile.name != "timestep":
            assert profile.accepts((1, 3, h, w)), profile.describe()


def test_a_shape_range_replaces_the_profile_rounded_to_the_size_multiple() -> None:
    d = _descriptor("IFNet")
    r = d.with_shape_range(ShapeRange((1920, 1080), max_batch=2, opt_size=(1280, 720)))
    assert r.profile is not None and d.profile is not None
    assert r.profile.max["img0"] == r.profile.max["img1"] == (2, 3, 1920, 1088)
    assert r.profile.max["timestep"] == (2, 1, 1, 1)  # the scalar input follows the batch only
    assert r.profile.opt["img0"] == (1, 3, 1280, 768) and r.profile.min == d.profile.min
    assert r.opt_shape() == (1, 1280, 768)  # where the build exports, calibrates and times
    square = _descriptor("ESPCN").with_shape_range(ShapeRange(512))
    assert square.profile is not None and square.profile.max["input"] == (4, 3, 512, 512)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_size": (0, 64)}, "max_size must be \\(height, width\\) of integers >= 1, got \\(0, 64\\)"),
        ({"max_size": (64, 64), "max_batch": 0}, "max_batch must be an integer >= 1, got 0"),
        ({"max_size": (64, 64), "opt_size": (128, 64)}, "opt_size \\(128, 64\\) must not exceed max_size"),
        ({"max_size": "1080p"}, "max_size must be \\(height, width\\)"),
    ],
)
def test_a_bad_shape_range_says_what_was_expected_and_what_came(kwargs: dict, match: str) -> None:
    with pytest.raises(ModelInputError, match=match):
        ShapeRange(**kwargs)


def test_a_range_below_the_models_minimum_is_refused() -> None:
    with pytest.raises(ModelInputError, match="max_size \\(32, 32\\) is below the model's minimum side 64"):
        _descriptor("IFNet").with_shape_range(ShapeRange(32))


async def test_the_range_is_part_of_the_key_and_of_the_pooled_runner(config: ModelConfig) -> None:
    """Each range is its own entry (built in the build process, which gets the range), the same range
    the same runner; ModelConfig.shape_ranges is the default a call can override."""
    small = ShapeRange((512, 768), max_batch=2)
    config = config.replace(shape_ranges={"super_resolution": small})
    async with ModelManager(config) as m:
        from_config = await m.load_optimized_model("super_resolution", "default", "onnx")
        again = await m.load_optimized_model("super_resolution", "default", "onnx", shape_range=small)
        other = await m.load_optimized_model(
            "super_resolution", "default", "onnx", shape_range=ShapeRange((256, 256), max_batch=1)
        )
        assert again is from_config and other is not from_config
        assert from_config.descriptor.profile.max["input"] == (2, 3, 512, 768)
        assert other.descriptor.profile.max["input"] == (1, 3, 256, 256)
        assert from_config.info.cache_key != other.info.cache_key
        frame = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
        np.testing.assert_allclose(from_config(frame), other(frame), atol=1e-5)
        with pytest.raises(ModelInputError, match="shape_range must be a ShapeRange, got tuple"):
            await m.load_optimized_model("super_resolution", "default", "onnx", shape_range=(512, 512))  # type: ignore[arg-type]
    with pytest.raises(ModelInputError, match="shape_ranges\\['style_transfer'\\] must be a ShapeRange"):
        ModelConfig(shape_ranges={"style_transfer": (1080, 1920)})  # type: ignore[dict-item]
