"""RIFE IFNet (4.25/4.26 lite and heavy layouts): shapes, detection, strict load, warp, export."""

from __future__ import annotations

import re

import pytest
import torch

import model_manager.models.interpolation as interp
from model_manager.errors import StateDictMismatchError
from model_manager.models.base import ARCHITECTURES, LoadedModel

LITE = "IFNet"
HEAVY = "IFNet-heavy"
IDS = (LITE, HEAVY)


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    """Both layouts in their published configuration, seeded random weights."""
    return {aid: ARCHITECTURES[aid].create(seed=0) for aid in IDS}


def _frames(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random 0..1 frames of shape (n, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.rand(n, 3, h, w, generator=g)


def _run(model: LoadedModel, img0, img1, t: float | torch.Tensor) -> torch.Tensor:
    """Forward without autograd; a float timestep becomes an (N,1,1,1) tensor."""
    if not torch.is_tensor(t):
        t = torch.full((img0.shape[0], 1, 1, 1), float(t))
    with torch.no_grad():
        return model.module(img0, img1, t)


def test_published_configs():
    lite = ARCHITECTURES[LITE].default_hyperparameters()
    heavy = ARCHITECTURES[HEAVY].default_hyperparameters()
    assert lite == {"widths": (192, 128, 96, 64, 32), "encoder_channels": 4, "heavy": False}
    assert heavy == {"widths": (192, 128, 96, 64, 32), "encoder_channels": 16, "heavy": True}
    assert interp.SCALE_LIST == (16, 8, 4, 2, 1)


@pytest.mark.parametrize("aid", IDS)
def test_hyperparameters_read_back(models, aid):
    model = models[aid]
    sd = model.module.state_dict()
    assert ARCHITECTURES[aid].hyperparameters(sd) == model.hyperparameters


def test_wide_blocks_read_back():
    hp = {"widths": (384, 256, 192, 128, 64), "encoder_channels": 4, "heavy": False}
    sd = ARCHITECTURES[LITE].build(**hp).state_dict()
    assert ARCHITECTURES[LITE].hyperparameters(sd) == hp


@pytest.mark.parametrize("aid", IDS)
def test_detected_only_by_own_layout(models, aid):
    sd = models[aid].module.state_dict()
    claimed = [a for a in IDS if ARCHITECTURES[a].matches(sd)]
    assert claimed == [aid]
    other = HEAVY if aid == LITE else LITE
    with pytest.raises(ValueError):
        ARCHITECTURES[other].hyperparameters(sd)


def test_other_scale_lists_are_rejected():
    """4.25.lite (last block 24 wide, scale_list 32/16/8/4/1) must not pass as 4.25."""
    sd = interp.IFNet((192, 128, 96, 64, 24), 4).state_dict()
    assert not ARCHITECTURES[LITE].matches(sd)


@pytest.mark.parametrize("aid", IDS)
def test_strict_load_reproduces_outputs(models, aid):
    model = models[aid]
    sd = {k: v.clone() for k, v in model.module.state_dict().items()}
    sd["teacher.conv0.0.0.weight"] = torch.zeros(32, 3, 3, 3)
    sd["caltime.0.weight"] = torch.zeros(8, 41, 3, 3)
    loaded = ARCHITECTURES[aid].load(sd)
    img0, img1 = _frames(1, 64, 128)
    assert torch.equal(_run(loaded, img0, img1, 0.5), _run(model, img0, img1, 0.5))


def test_strict_load_names_unknown_keys(models):
    sd = dict(models[LITE].module.state_dict())
    sd["block0.teacher.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError, match=re.escape("block0.teacher.weight")):
        ARCHITECTURES[LITE].load(sd)


@pytest.mark.parametrize("aid", IDS)
@pytest.mark.parametrize("size", [(64, 64), (128, 192)])
def test_output_shape(models, aid, size):
    img0, img1 = _frames(1, *size)
    out = _run(models[aid], img0, img1, 0.5)
    assert out.shape == img0.shape
    assert torch.isfinite(out).all()


def test_timestep_changes_output(models):
    img0, img1 = _frames(1, 64, 64)
    a = _run(models[LITE], img0, img1, 0.0)
    b = _run(models[LITE], img0, img1, 1.0)
    assert (a - b).abs().max() > 1e-4


def test_warp_constant_flow_shifts_image():
    """Flow (+1, 0) samples one pixel to the right; (0, +1) one row down (border at the edge)."""
    img = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(3))
    right = torch.zeros(2, 2, 16, 20)
    right[:, 0] = 1.0
    out = interp.warp(img, right)
    torch.testing.assert_close(out[..., :-1], img[..., 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., -1], img[..., -1], atol=1e-5, rtol=0)
    down = torch.zeros(2, 2, 16, 20)
    down[:, 1] = 1.0
    torch.testing.assert_close(interp.warp(img, down)[:, :, :-1], img[:, :, 1:], atol=1e-5, rtol=0)


def test_warp_keeps_dtype():
    img = torch.rand(1, 3, 8, 8).half()
    assert interp.warp(img, torch.zeros(1, 2, 8, 8).half()).dtype == torch.float16


def test_batch_with_per_sample_timesteps(models):
    img0, img1 = _frames(2, 64, 64, seed=1)
    t = torch.tensor([0.25, 0.75]).view(2, 1, 1, 1)
    out = _run(models[LITE], img0, img1, t)
    for i in range(2):
        single = _run(models[LITE], img0[i : i + 1], img1[i : i + 1], t[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], single, atol=1e-5, rtol=1e-5)
    same = _run(models[LITE], img0[:1].expand(2, -1, -1, -1), img1[:1].expand(2, -1, -1, -1), t)
    assert (same[0] - same[1]).abs().max() > 1e-4


@pytest.mark.parametrize("aid", IDS)
def test_fused_forward_equals_the_reference_loop(models, aid):
    """Fused warps (one grid, both directions and frames+features in one grid_sample) compute what
    Practical-RIFE's loop computes: per-sample timesteps, batch 2, a non-square size."""
    img0, img1 = _frames(2, 128, 192, seed=4)
    t = torch.tensor([0.3, 0.8]).view(2, 1, 1, 1)
    module = models[aid].module
    with torch.no_grad():
        fused = module(img0, img1, t)
        reference = interp.unfused_forward(module, img0, img1, t)
    assert (fused - reference).abs().max().item() <= 1e-5


def test_sample_on_a_shared_grid_equals_the_reference_warp():
    g = torch.Generator().manual_seed(5)
    img = torch.rand(3, 7, 48, 80, generator=g)
    flow = (torch.rand(3, 2, 48, 80, generator=g) - 0.5) * 20
    grid = interp.WarpGrid.of(48, 80, img.device)
    assert grid.base.shape == (1, 2, 48, 80) and grid.half_extent.shape == (1, 2, 1, 1)
    torch.testing.assert_close(
        interp.sample(img, grid.coords(flow)), interp.warp(img, flow), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("aid", IDS)
def test_descriptor(models, aid):
    d = models[aid].descriptor
    assert d.model_type == "interpolation" and d.architecture == aid
    assert [s.name for s in d.inputs] == ["img0", "img1", "timestep"]
    assert d.inputs[2].shape == ("batch", 1, 1, 1) and d.inputs[2].kind == "scalar"
    assert [s.name for s in d.image_inputs] == ["img0", "img1"]
    assert d.output.shape == ("batch", 3, "height", "width")
    assert (d.scale, d.size_min, d.size_multiple, d.pad_mode) == (1, 64, 64, "constant")
    assert d.profile.max["img0"] == (4, 3, 1088, 1920)  # a 1080p landscape frame, padded to 64
    assert d.profile.max["timestep"] == (4, 1, 1, 1)
    assert d.profile.min["img1"] == (1, 3, 64, 64)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_lite(models, tmp_path):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "ifnet.onnx"
    img0, img1 = _frames(1, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        models[LITE].module,
        (img0, img1, torch.full((1, 1, 1, 1), 0.5)),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["img0", "img1", "timestep"],
        output_names=["output"],
        dynamic_axes={"img0": axes, "img1": axes, "timestep": {0: "batch"}, "output": axes},
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    # fused: frames and features of both directions, one grid_sample each per level (reference: 18)
    assert ops.count("GridSample") == 2 * (len(interp.SCALE_LIST) - 1) + 1
