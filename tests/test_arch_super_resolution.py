"""Super-resolution families: shapes -> hyperparameters, strict reload, detection, and numerics.

The numerical tests recompute each network with hand-written torch.nn.functional code (following
the reference implementations in Real-ESRGAN, BasicSR and pytorch/examples) from the state dict
alone, so a wrong padding, activation, residual scale or upsampling mode shows up as a mismatch.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import model_manager.models.super_resolution as sr  # importing registers the families
from model_manager.models.base import ARCHITECTURES

SRVGG = ARCHITECTURES["SRVGGNetCompact"]
RRDB = ARCHITECTURES["RRDBNet"]
ESPCN = ARCHITECTURES["ESPCN"]
SR_ARCHS = (SRVGG, RRDB, ESPCN)

SMALL_SRVGG = {
    "num_in_ch": 3,
    "num_out_ch": 3,
    "num_feat": 8,
    "num_conv": 3,
    "upscale": 2,
    "act_type": "prelu",
}
SMALL_RRDB = {
    "num_in_ch": 3,
    "num_out_ch": 3,
    "scale": 4,
    "num_feat": 8,
    "num_block": 2,
    "num_grow_ch": 4,
}
SMALL_ESPCN = {"channels": 3, "upscale": 2, "feat1": 8, "feat2": 8, "feat3": 4}

ANIMEVIDEOV3 = {**SRVGG.default_hyperparameters(), "num_conv": 16}
GENERAL_X4V3 = {**SRVGG.default_hyperparameters(), "num_conv": 32}
X4PLUS = RRDB.default_hyperparameters()
X2PLUS = {**X4PLUS, "scale": 2}


def _meta_state_dict(arch: Any, hp: dict[str, Any]) -> dict[str, torch.Tensor]:
    """State dict of a module built on the meta device: real shapes, no memory, no compute."""
    with torch.device("meta"):
        return arch.build(**hp).state_dict()


def _randomized(module: torch.nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """The module's state dict with every tensor redrawn (non-trivial PReLU slopes and biases)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in module.state_dict().items()}


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    """A seeded 0..1 image batch."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _nearest(x: torch.Tensor, s: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor, written without F.interpolate."""
    return x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


def _conv(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str, pad: int = 1) -> torch.Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=pad)


# --------------------------------------------------------------------- hyperparameters from shapes


@pytest.mark.parametrize(
    ("arch", "hp"),
    [
        (SRVGG, SMALL_SRVGG),
        (SRVGG, ANIMEVIDEOV3),
        (SRVGG, GENERAL_X4V3),
        (
            SRVGG,
            {
                **SMALL_SRVGG,
                "num_conv": 0,
                "upscale": 3,
                "num_in_ch": 1,
                "num_out_ch": 1,
            },
        ),
        (RRDB, SMALL_RRDB),
        (RRDB, {**SMALL_RRDB, "scale": 2}),
        (RRDB, {**SMALL_RRDB, "scale": 1, "num_in_ch": 1, "num_out_ch": 1}),
        (RRDB, {**X4PLUS, "num_block": 2}),
        (RRDB, {**X2PLUS, "num_block": 2}),
        (ESPCN, SMALL_ESPCN),
        (ESPCN, ESPCN.default_hyperparameters()),
        (ESPCN, {"channels": 1, "upscale": 3, "feat1": 64, "feat2": 64, "feat3": 32}),
    ],
)
def test_hyperparameters_read_back(arch: Any, hp: dict[str, Any]) -> None:
    model = arch.create(hp, seed=0)
    assert arch.hyperparameters(model.module.state_dict()) == hp
    assert model.descriptor.hyperparameters == hp


@pytest.mark.parametrize(
    ("arch", "hp"),
    [(SRVGG, ANIMEVIDEOV3), (SRVGG, GENERAL_X4V3), (RRDB, X4PLUS), (RRDB, X2PLUS)],
)
def test_published_configs_read_back_from_full_size_shapes(arch: Any, hp: dict[str, Any]) -> None:
    assert arch.hyperparameters(_meta_state_dict(arch, hp)) == hp


def test_srvgg_published_key_layout() -> None:
    for hp, last in ((ANIMEVIDEOV3, 34), (GENERAL_X4V3, 66)):
        sd = _meta_state_dict(SRVGG, hp)
        assert tuple(sd["body.0.weight"].shape) == (64, 3, 3, 3)
        assert tuple(sd["body.1.weight"].shape) == (64,)  # per-channel PReLU
        assert tuple(sd[f"body.{last - 1}.weight"].shape) == (64,)
        assert tuple(sd[f"body.{last}.weight"].shape) == (48, 64, 3, 3)  # 3 * 4^2
        assert f"body.{last + 1}.weight" not in sd
        assert len(sd) == 2 * (hp["num_conv"] + 2) + hp["num_conv"] + 1


def test_rrdbnet_published_key_layout() -> None:
    sd = _meta_state_dict(RRDB, X4PLUS)
    expected = {
        "conv_first",
        "conv_body",
        "conv_up1",
        "conv_up2",
        "conv_hr",
        "conv_last",
    }
    expected |= {f"body.{b}.rdb{r}.conv{c}" for b in range(23) for r in (1, 2, 3) for c in range(1, 6)}
    assert set(sd) == {f"{m}.{p}" for m in expected for p in ("weight", "bias")}
    assert tuple(sd["conv_first.weight"].shape) == (64, 3, 3, 3)
    assert tuple(sd["body.22.rdb3.conv5.weight"].shape) == (64, 64 + 4 * 32, 3, 3)
    assert tuple(sd["body.0.rdb1.conv4.weight"].shape) == (32, 64 + 3 * 32, 3, 3)
    assert tuple(sd["conv_last.weight"].shape) == (3, 64, 3, 3)
    assert tuple(_meta_state_dict(RRDB, X2PLUS)["conv_first.weight"].shape) == (
        64,
        12,
        3,
        3,
    )


def test_espcn_key_layout_matches_pytorch_examples() -> None:
    sd = _meta_state_dict(ESPCN, {"channels": 1, "upscale": 3})
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes == {
        "conv1.weight": (64, 1, 5, 5),
        "conv1.bias": (64,),
        "conv2.weight": (64, 64, 3, 3),
        "conv2.bias": (64,),
        "conv3.weight": (32, 64, 3, 3),
        "conv3.bias": (32,),
        "conv4.weight": (9, 32, 3, 3),
        "conv4.bias": (9,),
    }


def test_parameter_counts_of_published_configs() -> None:
    def count(arch: Any, hp: dict[str, Any]) -> int:
        return sum(v.numel() for v in _meta_state_dict(arch, hp).values())

    assert count(RRDB, X4PLUS) == 16_697_987  # RealESRGAN_x4plus / ESRGAN x4
    assert count(RRDB, X2PLUS) == 16_697_987 + 64 * 9 * 9
    assert count(SRVGG, ANIMEVIDEOV3) == 621_424
    assert count(SRVGG, GENERAL_X4V3) == 1_213_296


# --------------------------------------------------------------------- strict reload and shapes


@pytest.mark.parametrize(
    ("arch", "hp", "scale"),
    [
        (SRVGG, SMALL_SRVGG, 2),
        (SRVGG, {**SMALL_SRVGG, "upscale": 4}, 4),
        (RRDB, SMALL_RRDB, 4),
        (RRDB, {**SMALL_RRDB, "scale": 2}, 2),
        (RRDB, {**SMALL_RRDB, "scale": 1}, 1),
        (ESPCN, SMALL_ESPCN, 2),
        (ESPCN, {**SMALL_ESPCN, "upscale": 3}, 3),
    ],
)
def test_load_reproduces_outputs_and_scales(arch: Any, hp: dict[str, Any], scale: int) -> None:
    created = arch.create(hp, seed=0)
    loaded = arch.load(created.module.state_dict())
    assert loaded.hyperparameters == hp
    assert loaded.architecture == arch.id
    x = _image(1, 3, 16, 12)
    with torch.no_grad():
        y = created.module(x)
        assert torch.equal(loaded.module(x), y)
    assert y.shape == (1, 3, 16 * scale, 12 * scale)
    assert created.descriptor.output_size(16, 12) == (16 * scale, 12 * scale)


def test_create_is_deterministic() -> None:
    for arch, hp in ((SRVGG, SMALL_SRVGG), (RRDB, SMALL_RRDB), (ESPCN, SMALL_ESPCN)):
        a = arch.create(hp, seed=0).module.state_dict()
        b = arch.create(hp, seed=0).module.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_rejects_a_missing_key() -> None:
    sd = dict(RRDB.create(SMALL_RRDB).module.state_dict())
    del sd["conv_hr.bias"]
    with pytest.raises(Exception, match=r"conv_hr\.bias"):
        RRDB.load(sd)


# --------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("arch", "hp"),
    [
        (SRVGG, SMALL_SRVGG),
        (SRVGG, GENERAL_X4V3),
        (RRDB, SMALL_RRDB),
        (RRDB, {**SMALL_RRDB, "scale": 2}),
        (RRDB, X4PLUS),
        (ESPCN, SMALL_ESPCN),
        (ESPCN, ESPCN.default_hyperparameters()),
    ],
)
def test_each_state_dict_matches_only_its_own_architecture(arch: Any, hp: dict[str, Any]) -> None:
    sd = _meta_state_dict(arch, hp)
    assert [a.id for a in SR_ARCHS if a.matches(sd)] == [arch.id]


def test_transformer_net_keys_are_not_claimed() -> None:
    z = torch.zeros
    sd = {
        "conv1.conv2d.weight": z(32, 3, 9, 9),
        "conv1.conv2d.bias": z(32),
        "in1.weight": z(32),
        "conv2.conv2d.weight": z(64, 32, 3, 3),
        "conv3.conv2d.weight": z(128, 64, 3, 3),
        "res1.conv1.conv2d.weight": z(128, 128, 3, 3),
        "deconv3.conv2d.bias": z(3),
    }
    assert not any(a.matches(sd) for a in SR_ARCHS)
    # even with plain conv1..conv4 keys present, TransformerNet markers veto ESPCN
    espcn = _meta_state_dict(ESPCN, SMALL_ESPCN)
    assert not ESPCN.matches({**espcn, "in1.weight": z(32)})
    assert not ESPCN.matches({**espcn, "conv5.weight": z(3, 3, 3, 3)})


def test_srvgg_without_prelu_is_rejected() -> None:
    sd = _meta_state_dict(SRVGG, SMALL_SRVGG)
    # a ReLU variant: the same convs renumbered with no parameterised activations in between
    convs = [sd[f"body.{i}.weight"] for i in range(0, 2 * SMALL_SRVGG["num_conv"] + 3, 2)]
    relu_sd = {f"body.{2 * j}.weight": w for j, w in enumerate(convs)}
    assert not SRVGG.matches(relu_sd)
    with pytest.raises(ValueError, match="prelu"):
        SRVGG.hyperparameters(relu_sd)
    with pytest.raises(ValueError, match="prelu"):
        SRVGG.build(**{**SMALL_SRVGG, "act_type": "relu"})


def test_inconsistent_shapes_raise_value_error() -> None:
    sd = dict(_meta_state_dict(SRVGG, SMALL_SRVGG))
    last = 2 * SMALL_SRVGG["num_conv"] + 2
    sd[f"body.{last}.weight"] = torch.zeros(15, 8, 3, 3)  # 15 / 3 = 5 is not a square
    with pytest.raises(ValueError, match="square"):
        SRVGG.hyperparameters(sd)

    sd = dict(_meta_state_dict(RRDB, SMALL_RRDB))
    sd["conv_first.weight"] = torch.zeros(8, 6, 3, 3)  # neither 3, 12 nor 48 inputs
    with pytest.raises(ValueError, match="conv_first"):
        RRDB.hyperparameters(sd)
    sd = dict(_meta_state_dict(RRDB, SMALL_RRDB))
    sd["body.1.rdb2.conv3.weight"] = torch.zeros(4, 8, 3, 3)
    with pytest.raises(ValueError, match=r"body\.1\.rdb2\.conv3"):
        RRDB.hyperparameters(sd)

    sd = dict(_meta_state_dict(ESPCN, SMALL_ESPCN))
    sd["conv1.weight"] = torch.zeros(8, 3, 3, 3)  # the example's first conv is 5x5
    with pytest.raises(ValueError, match="5x5"):
        ESPCN.hyperparameters(sd)


# --------------------------------------------------------------------- descriptors


def test_descriptors() -> None:
    d = RRDB.descriptor(X2PLUS)
    assert (d.model_type, d.architecture, d.scale, d.size_multiple) == (
        "super_resolution",
        "RRDBNet",
        2,
        2,
    )
    assert d.inputs[0].channels == 3 and d.inputs[0].value_range == (0.0, 1.0)
    assert d.output.shape == ("batch", 3, "height_out", "width_out")
    assert d.size_min >= d.size_multiple and d.pad_mode == "reflect"
    assert d.precisions == ("fp32", "fp16", "bf16", "int8")
    assert d.profile is not None and d.profile.opt["input"] == (1, 3, 128, 128)
    assert RRDB.descriptor({**X4PLUS, "scale": 1}).size_multiple == 4
    x4 = RRDB.descriptor(X4PLUS)
    assert x4.size_multiple == 1 and x4.profile is not None
    assert x4.profile.max["input"] == (4, 3, 512, 512)

    v = SRVGG.descriptor(GENERAL_X4V3)
    assert (v.architecture, v.scale, v.size_multiple) == ("SRVGGNetCompact", 4, 1)
    assert v.profile is not None and v.profile.opt["input"] == (1, 3, 128, 128)
    assert "32 convs" in v.notes

    e = ESPCN.descriptor(ESPCN.default_hyperparameters())
    assert (e.architecture, e.scale, e.inputs[0].channels) == ("ESPCN", 2, 3)
    assert e.profile is not None
    assert e.profile.opt["input"] == (1, 3, 256, 256)
    assert e.profile.max["input"] == (4, 3, 1024, 1024)
    assert e.to_dict()["hyperparameters"]["feat3"] == 32


# --------------------------------------------------------------------- numerical equivalence


def test_srvgg_matches_functional_reference() -> None:
    hp = {**SMALL_SRVGG, "upscale": 4}
    model = SRVGG.create(hp, seed=0).module
    sd = _randomized(model)
    loaded = SRVGG.load(sd).module
    x = _image(2, 3, 9, 7)
    out = _conv(x, sd, "body.0")
    for i in range(hp["num_conv"] + 1):
        out = F.prelu(out, sd[f"body.{2 * i + 1}.weight"])
        out = _conv(out, sd, f"body.{2 * i + 2}")
    expected = F.pixel_shuffle(out, 4) + _nearest(x, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=1e-5, atol=1e-5)


def test_espcn_matches_functional_reference() -> None:
    model = ESPCN.create(SMALL_ESPCN, seed=0).module
    sd = _randomized(model)
    loaded = ESPCN.load(sd).module
    x = _image(2, 3, 10, 11)
    h = F.relu(_conv(x, sd, "conv1", pad=2))
    h = F.relu(_conv(h, sd, "conv2"))
    h = F.relu(_conv(h, sd, "conv3"))
    expected = F.pixel_shuffle(_conv(h, sd, "conv4"), 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=1e-5, atol=1e-5)


def _rdb(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    """BasicSR ResidualDenseBlock: dense LeakyReLU(0.2) convs, conv5, residual scaled by 0.2."""
    x1 = F.leaky_relu(_conv(x, sd, f"{p}.conv1"), 0.2)
    x2 = F.leaky_relu(_conv(torch.cat((x, x1), 1), sd, f"{p}.conv2"), 0.2)
    x3 = F.leaky_relu(_conv(torch.cat((x, x1, x2), 1), sd, f"{p}.conv3"), 0.2)
    x4 = F.leaky_relu(_conv(torch.cat((x, x1, x2, x3), 1), sd, f"{p}.conv4"), 0.2)
    x5 = _conv(torch.cat((x, x1, x2, x3, x4), 1), sd, f"{p}.conv5")
    return x5 * 0.2 + x


def _unshuffle(x: torch.Tensor, s: int) -> torch.Tensor:
    """BasicSR's pixel_unshuffle (view + permute), independent of F.pixel_unshuffle."""
    b, c, hh, hw = x.shape
    view = x.view(b, c, hh // s, s, hw // s, s)
    return view.permute(0, 1, 3, 5, 2, 4).reshape(b, c * s * s, hh // s, hw // s)


def _rrdbnet(x: torch.Tensor, sd: dict[str, torch.Tensor], hp: dict[str, Any]) -> torch.Tensor:
    """BasicSR RRDBNet forward written out: unshuffle, trunk, two nearest x2 ups, conv_hr, conv_last."""
    factor = {4: 1, 2: 2, 1: 4}[hp["scale"]]
    feat = _conv(_unshuffle(x, factor) if factor > 1 else x, sd, "conv_first")
    trunk = feat
    for b in range(hp["num_block"]):
        inner = trunk
        for r in (1, 2, 3):
            inner = _rdb(inner, sd, f"body.{b}.rdb{r}")
        trunk = inner * 0.2 + trunk
    feat = feat + _conv(trunk, sd, "conv_body")
    feat = F.leaky_relu(_conv(_nearest(feat, 2), sd, "conv_up1"), 0.2)
    feat = F.leaky_relu(_conv(_nearest(feat, 2), sd, "conv_up2"), 0.2)
    return _conv(F.leaky_relu(_conv(feat, sd, "conv_hr"), 0.2), sd, "conv_last")


def test_residual_dense_block_scales_its_residual_by_0_2() -> None:
    model = RRDB.create(SMALL_RRDB, seed=0).module
    sd = _randomized(model)
    loaded = RRDB.load(sd).module
    x = torch.randn(1, 8, 6, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = loaded.body[0].rdb1(x)
        torch.testing.assert_close(got, _rdb(x, sd, "body.0.rdb1"), rtol=1e-5, atol=1e-5)
        # conv5 output; an unscaled (factor 1) residual would differ
        x5 = (got - x) / 0.2
        assert not torch.allclose(got, x5 + x, atol=1e-3)
        rrdb = loaded.body[1]
        inner = _rdb(_rdb(_rdb(x, sd, "body.1.rdb1"), sd, "body.1.rdb2"), sd, "body.1.rdb3")
        torch.testing.assert_close(rrdb(x), inner * 0.2 + x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdbnet_matches_functional_reference(scale: int) -> None:
    hp = {**SMALL_RRDB, "scale": scale}
    sd = _randomized(RRDB.create(hp, seed=0).module)
    loaded = RRDB.load(sd).module
    x = _image(1, 3, 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _rrdbnet(x, sd, hp), rtol=1e-4, atol=1e-5)


def test_module_classes_are_exported() -> None:
    assert isinstance(SRVGG.build(**SMALL_SRVGG), sr.SRVGGNetCompact)
    assert isinstance(RRDB.build(**SMALL_RRDB), sr.RRDBNet)
    assert isinstance(ESPCN.build(**SMALL_ESPCN), sr.ESPCN)
