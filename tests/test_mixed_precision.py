"""Accuracy-aware mixed precision: the float-layer search, its Q/DQ edit, and what each engine does with it.

The search's own logic is checked with exact, hand-computable PSNR functions (the thing checked is
which set it picks and how many trials it spends); everything else runs real torch, ONNX and
ONNX Runtime on real sample photos: a model with one deliberately sensitive layer, and the
embedded defaults through the manager.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model_manager import ModelConfig, ModelManager, QualityGates
from model_manager.descriptor import ModelDescriptor, TensorSpec, image_profile
from model_manager.errors import InvalidInputError, QualityGateError
from model_manager.optim import int8_steps
from model_manager.optim.graph import BuildContext
from model_manager.optim.intermediates import CHECK_ITEMS, FP32_REFERENCE, QUANT_READY_ONNX
from model_manager.optim.layer_names import fx_float_modules, module_for_node, nncf_patterns
from model_manager.optim.mixed_precision import (
    MixedPrecision,
    MixedPrecisionConfig,
    Unit,
    extend_float_layers,
    search_float_layers,
)
from model_manager.optim.qdq_float import QdqEvaluator, QdqModel
from model_manager.optim.settings import BuildSettings


# -- the search, on exact PSNR functions ------------------------------------------------------------
def _additive(base: float, gains: dict[str, float]):
    """PSNR = base + the gains of the float units (sensitivities that add up)."""
    calls: list[frozenset[str]] = []

    def evaluate(floats: frozenset[str]) -> float:
        calls.append(floats)
        return base + sum(gains[n] for n in floats)

    return evaluate, calls


def _units(n: int, macs: int = 100) -> list[Unit]:
    return [Unit(f"/layer{i}/Conv", "Conv", macs) for i in range(n)]


def test_one_sensitive_unit_among_many_is_the_only_one_kept_in_float() -> None:
    units = _units(10)
    evaluate, _ = _additive(30.0, {u.name: (8.0 if u.name == "/layer6/Conv" else 0.1) for u in units})
    result = search_float_layers(units, evaluate, 35.5)
    assert result.float_layers == ["/layer6/Conv"]
    assert result.passed and result.psnr_db == pytest.approx(38.0)
    assert result.int8_mac_share == pytest.approx(0.9)
    assert result.ranking[0] == "/layer6/Conv"


def test_the_search_adds_layers_until_the_target_and_gives_back_what_it_can() -> None:
    units = _units(8)
    gains = {u.name: g for u, g in zip(units, (3.0, 0.2, 2.5, 0.1, 0.0, 1.0, 0.0, 0.3))}
    evaluate, _ = _additive(30.0, gains)
    result = search_float_layers(units, evaluate, 35.2)
    assert sorted(result.float_layers) == ["/layer0/Conv", "/layer2/Conv"]
    assert result.psnr_db == pytest.approx(35.5)


def test_the_search_is_deterministic_and_stays_within_its_trial_budget() -> None:
    units = _units(200)
    gains = {u.name: ((i * 37) % 11) / 10 for i, u in enumerate(units)}
    config = MixedPrecisionConfig(max_trials=30)
    runs = []
    for _ in range(2):
        evaluate, calls = _additive(20.0, gains)
        runs.append((search_float_layers(units, evaluate, 31.0, config), calls))
    (a, calls_a), (b, calls_b) = runs
    assert a.float_layers == b.float_layers and a.history == b.history and calls_a == calls_b
    assert len(calls_a) == a.trials <= 30
    assert len(set(calls_a)) == len(calls_a), "a float set is never evaluated twice"


def test_a_long_prefix_goes_back_to_int8_in_galloping_chunks_within_few_trials() -> None:
    """A flat ranking: only two units in float together pass, and neither gains alone, so the
    shortest passing prefix is every unit. Giving back one unit per trial would leave most of
    the 30 float when the trials run out; chunks that double after each success return all but
    the two within them."""
    units = _units(30)
    needed = {"/layer1/Conv", "/layer28/Conv"}

    def evaluate(floats: frozenset[str]) -> float:
        return 30.0 + 6.0 * (needed <= floats)

    result = search_float_layers(units, evaluate, 35.5, MixedPrecisionConfig(max_trials=30))
    assert set(result.float_layers) == needed, result.history
    assert result.passed and result.trials <= 30


def test_a_model_that_already_passes_keeps_everything_in_int8_after_one_trial() -> None:
    evaluate, calls = _additive(40.0, {u.name: 1.0 for u in _units(5)})
    result = search_float_layers(_units(5), evaluate, 35.5)
    assert result.float_layers == [] and result.int8_mac_share == 1.0 and len(calls) == 1


def test_an_unreachable_target_reports_the_best_it_reached() -> None:
    units = _units(6)
    evaluate, _ = _additive(20.0, {u.name: 1.0 for u in units})
    result = search_float_layers(units, evaluate, 35.0)
    assert not result.passed
    assert result.psnr_db == pytest.approx(26.0)  # everything in float reached 26 dB: the best seen


def test_units_that_start_in_float_stay_float_and_count_against_the_budget() -> None:
    units = _units(40)
    gains = {u.name: (5.0 if u.name == "/layer3/Conv" else 0.05) for u in units}
    evaluate, calls = _additive(25.0, gains)
    start = ["/layer0/Conv", "/layer1/Conv"]
    result = search_float_layers(units, evaluate, 31.0, MixedPrecisionConfig(max_trials=20), start=start)
    assert all(set(start) <= call for call in calls[1:]), "every trial after 'before' keeps them float"
    assert calls[0] == frozenset() and result.psnr_all_int8_db == pytest.approx(25.0)
    assert set(start) <= set(result.float_layers) and "/layer3/Conv" in result.float_layers
    assert result.started_float == start and len(calls) == result.trials <= 20


def _decision(floats: list[str], ranking: list[str], target: float = 35.0) -> MixedPrecision:
    return MixedPrecision(
        float_layers=floats,
        ranking=ranking,
        int8_mac_share=1.0,
        psnr_all_int8_db=30.0,
        psnr_db=target,
        target_db=target,
        passed=True,
        trials=1,
        seconds=0.0,
        units=len(ranking),
        unit_macs={n: 100 for n in ranking},
    )


def test_an_engine_that_misses_with_the_decision_extends_it_along_the_ranking() -> None:
    """Another engine needs ``c`` in float too: it adds the shortest ranking prefix that reaches the
    target (``b``, ``c``), then gives back to INT8 what it can (``b``)."""
    decision = _decision(["a"], ["a", "b", "c", "d", "e", "f"])
    calls: list[frozenset[str]] = []

    def engine(floats: frozenset[str]) -> float:
        calls.append(floats)
        return 30.0 + 10.0 * ("c" in floats) + 0.1 * len(floats)

    result = extend_float_layers("engine", decision, engine, max_trials=8)
    assert calls[0] == frozenset({"a"}), "the first trial is the decision as it is"
    assert all("a" in call for call in calls), "the decision's float layers are never given back"
    assert result.added == ["c"] and result.float_layers == ["a", "c"]
    assert result.passed and result.psnr_decision_db == pytest.approx(30.1)
    assert result.int8_mac_share == pytest.approx(0.6667) and result.trials == len(calls) <= 8


def test_an_engine_that_passes_with_the_decision_spends_one_trial_and_skips_units_it_cannot_keep() -> None:
    decision = _decision(["a"], ["a", "b", "fn", "c"])
    held = extend_float_layers("engine", decision, lambda floats: 36.0)
    assert held.added == [] and held.trials == 1 and held.passed

    seen: list[frozenset[str]] = []
    extended = extend_float_layers(
        "engine",
        decision,
        lambda f: seen.append(f) or 30.0 + 10.0 * ("c" in f),
        applies=lambda unit: unit != "fn",  # e.g. a functional op: no module to keep in float
    )
    assert not any("fn" in call for call in seen)
    assert extended.added == ["c"] and extended.passed


def test_search_settings_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="max_trials"):
        MixedPrecisionConfig(max_trials=1)
    with pytest.raises(InvalidInputError, match="unique"):
        search_float_layers([Unit("a", "Conv"), Unit("a", "Conv")], lambda _f: 0.0, 1.0)


# -- a real model with one sensitive layer ---------------------------------------------------------
class OneSensitiveLayer(nn.Module):
    """x + out(relu(sensitive(spread(relu(head(x)))))).

    ``spread``'s output channel 0 is ``factor`` (100) times the others, and ``sensitive`` scales
    that input channel back down: with factor 1 it is the same kind of net, but at 100 INT8 of
    ``sensitive``'s input (one scale for a tensor whose channels differ 100x) and of its weights
    (one scale per output channel for weights that differ 100x) loses the seven small channels.
    Every other layer quantizes well.
    """

    def __init__(self, factor: float = 100.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.spread = nn.Conv2d(8, 8, 3, padding=1)
        self.sensitive = nn.Conv2d(8, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 3, 3, padding=1)
        with torch.no_grad():
            self.spread.weight[0] *= factor
            self.spread.bias[0] *= factor
            self.sensitive.weight[:, 0] /= factor
            self.out.weight *= 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.head(x))
        h = torch.relu(self.sensitive(self.spread(h)))
        return x + self.out(h)


def _descriptor() -> ModelDescriptor:
    spec = TensorSpec("input", ("batch", 3, "height", "width"))
    return ModelDescriptor(
        "style_transfer",
        "OneSensitiveLayer",
        (spec,),
        TensorSpec("output", ("batch", 3, "height", "width")),
        profile=image_profile(("input",), 3, size_min=8, multiple=1, opt=64),
    )


def _ctx(tmp_path: Path, factor: float = 100.0) -> BuildContext:
    settings = BuildSettings(opt_size=(64, 64), num_threads=2)
    return BuildContext(OneSensitiveLayer(factor).eval(), _descriptor(), settings, tmp_path / "steps")


def test_a_deliberately_sensitive_layer_ends_exactly_in_float(tmp_path: Path) -> None:
    plain = int8_steps.float_layers(_ctx(tmp_path / "plain", factor=1.0))
    assert plain.psnr_all_int8_db >= 35.5 and plain.float_layers == [], (
        "without the 100x channel, INT8 passes"
    )
    result = int8_steps.float_layers(_ctx(tmp_path / "sensitive"))
    assert result.psnr_all_int8_db < 35.0, "with it, everything-INT8 fails its gate"
    assert result.float_layers == ["/sensitive/Conv"]
    assert result.passed and result.psnr_db >= 35.5
    assert 0.0 < result.int8_mac_share < 1.0
    assert result.trials <= 48


def test_the_served_qdq_file_is_what_the_search_measured(tmp_path: Path) -> None:
    """int8-static's file is the everything-INT8 Q/DQ model with the float layers' inputs rewired."""
    import onnx
    import onnxruntime as ort

    ctx = _ctx(tmp_path)
    served = onnx.load(str(ctx.get(int8_steps.INT8_QDQ_ONNX).main))
    sensitive = next(n for n in served.graph.node if n.name == "/sensitive/Conv")
    producers = {o: n.op_type for n in served.graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in sensitive.input), "reads float tensors"
    others = [n for n in served.graph.node if n.op_type == "Conv" and n.name != "/sensitive/Conv"]
    assert all(producers.get(n.input[0]) == "DequantizeLinear" for n in others), "the rest stay INT8"

    items, reference = ctx.get(CHECK_ITEMS), ctx.get(FP32_REFERENCE)
    session = ort.InferenceSession(served.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = np.concatenate([session.run(None, {"input": item[0]})[0] for item in items])
    from model_manager.optim.quality import psnr

    assert psnr(np.concatenate(reference), outputs) >= 35.0


def test_the_search_is_deterministic_on_a_real_model(tmp_path: Path) -> None:
    a = int8_steps.float_layers(_ctx(tmp_path / "a"))
    b = int8_steps.float_layers(_ctx(tmp_path / "b"))
    assert (a.float_layers, a.history, a.ranking) == (b.float_layers, b.history, b.ranking)


def test_keeping_every_unit_in_float_gives_back_the_fp32_model(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    model = QdqModel(ctx.get(QUANT_READY_ONNX).main, ctx.get(int8_steps.INT8_QDQ_ALL).main)
    evaluate = QdqEvaluator(model, ["input"], ctx.get(CHECK_ITEMS), ctx.get(FP32_REFERENCE), (0.0, 1.0))
    assert evaluate(frozenset(model.unit_names())) > 100.0
    everything_float = model.with_float(model.unit_names())
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in everything_float.graph.node)


def test_sampling_coordinates_start_in_float_and_their_convolutions_stay_int8(tmp_path: Path) -> None:
    from model_manager.models import all_architectures

    from .conftest import small_config

    loaded = all_architectures()["IFNet"].create(small_config("IFNet"))
    ctx = BuildContext(loaded.module, loaded.descriptor, BuildSettings(opt_size=(64, 64)), tmp_path)
    model = QdqModel(ctx.get(QUANT_READY_ONNX).main, ctx.get(int8_steps.INT8_QDQ_ALL).main)
    coordinates = model.coordinate_units()
    ops = {n.name: n.op_type for n in model.qdq.graph.node}
    assert coordinates and set(coordinates) <= set(model.unit_names())
    assert not {ops[n] for n in coordinates} & {"Conv", "ConvTranspose", "MatMul", "Gemm", "GridSample"}
    assert QdqModel(*_qdq_pair(tmp_path / "plain")).coordinate_units() == []  # no GridSample, no rule


def _qdq_pair(tmp_path: Path) -> tuple[Path, Path]:
    ctx = _ctx(tmp_path)
    return ctx.get(QUANT_READY_ONNX).main, ctx.get(int8_steps.INT8_QDQ_ALL).main


def test_calibration_and_checks_never_share_pixels() -> None:
    from model_manager.optim.calibration import held_out_set, sample_calibration_set
    from model_manager.samples import CALIBRATION_QUARTERS, HELD_OUT_QUARTERS

    assert not set(CALIBRATION_QUARTERS) & set(HELD_OUT_QUARTERS)
    assert len(set(CALIBRATION_QUARTERS) | set(HELD_OUT_QUARTERS)) == 4
    calibration = sample_calibration_set(_descriptor(), (32, 32), 8)
    held_out = held_out_set(_descriptor(), (32, 32), 8)
    assert not any(np.array_equal(a[0], b[0]) for a in calibration for b in held_out)


def test_crops_larger_than_a_quarter_keep_its_own_pixels_mirrored_not_upscaled() -> None:
    """A 256x256 window of a 225x150 quarter (chelsea) holds the quarter's pixels unresampled."""
    from PIL import Image

    from model_manager.samples import _photo_crop, _quarter, load_sample

    quarter = np.asarray(_quarter(Image.fromarray(load_sample("chelsea")), "top-left"))
    assert quarter.shape[0] < 256 and quarter.shape[1] < 256
    crop = _photo_crop("chelsea", 256, 256, (0, 0), "top-left")
    assert crop.shape == (256, 256, 3)
    width = crop.shape[1]
    for row in crop[::50]:  # each row: a stretch of one quarter row mirrored at its ends
        mirrored = [np.concatenate([q[::-1], q, q[::-1]]) for q in quarter]
        assert any(
            np.array_equal(row, m[i : i + width]) for m in mirrored for i in range(len(m) - width + 1)
        ), "a crop row is not a run of the quarter's own pixels"


TARGET = 40.0
"""Above what everything-INT8 reaches on the sensitive-layer net in every engine (35-36 dB)."""


def _ctx_with_decision(tmp_path: Path, floats: list[str]) -> BuildContext:
    """The sensitive-layer model's build with a float-layer decision given (not searched) aiming at
    ``TARGET``."""
    import json

    from model_manager.optim.graph import Files

    folder = tmp_path / "decision"
    folder.mkdir(parents=True)
    ranking = ["/head/Conv", "/spread/Conv", "/sensitive/Conv", "/out/Conv"]
    (folder / "float_layers.json").write_text(json.dumps(_decision(floats, ranking, target=TARGET).to_dict()))
    settings = BuildSettings(opt_size=(64, 64), num_threads=2)
    provided = {int8_steps.INT8_FLOAT_LAYERS: Files(folder, ("float_layers.json",))}
    return BuildContext(
        OneSensitiveLayer().eval(), _descriptor(), settings, tmp_path / "steps", provided=provided
    )


def test_the_qoperator_writer_extends_a_decision_its_kernels_miss_with(tmp_path: Path) -> None:
    """Given a decision that keeps nothing in float, QOperator INT8 fails, extends along the ranking
    until ``/sensitive/Conv`` is excluded, and writes that model with its record."""
    import onnx

    from model_manager.optim.int8_steps import read_engine_float_layers

    made = _ctx_with_decision(tmp_path, []).get(int8_steps.INT8_QOP_ONNX)
    record = read_engine_float_layers(made.folder, "int8-static-qop")
    assert record is not None and record.psnr_decision_db < TARGET <= record.psnr_db
    assert "/sensitive/Conv" in record.added and record.float_layers == record.added
    served = onnx.load(str(made.main))
    ops = {n.name: n.op_type for n in served.graph.node}
    assert ops["/sensitive/Conv"] == "Conv", "excluded: a float Conv in the QOperator model"
    assert any(op == "QLinearConv" for op in ops.values()), "the rest stay INT8"
    assert not list(made.folder.glob("trial-*")), "trial files are removed"


# -- one decision, each engine's names --------------------------------------------------------------
def test_onnx_node_names_map_to_the_modules_that_made_them() -> None:
    from model_manager.models import all_architectures

    from .conftest import small_config

    ifnet = all_architectures()["IFNet"].create(small_config("IFNet")).module
    assert module_for_node(ifnet, "/block0/conv0/conv0.0/conv0.0.0/Conv") == "block0.conv0.0.0"
    assert module_for_node(ifnet, "/block0/convblock/convblock.3/conv/Conv") == "block0.convblock.3.conv"
    assert module_for_node(ifnet, "/Add_3") is None  # a functional op has no module of its own
    assert module_for_node(ifnet, "/block0/Add") is None  # nor one inside a module with children
    modules, unmapped = fx_float_modules(OneSensitiveLayer(), ["/sensitive/Conv", "/Relu_1", "/Concat"])
    assert (modules, unmapped) == (["sensitive", "::Relu::1"], ["/Concat"]), "second torch.relu call"
    sketch = all_architectures()["TransformerNet"].create(small_config("TransformerNet")).module
    assert fx_float_modules(sketch, ["/res1/Add", "/deconv2/Resize", "/relu_3/Relu"])[0] == [
        "res1::Add::0",  # the residual ``x + ...`` inside res1
        "deconv2::Resize::0",  # F.interpolate inside deconv2
        "relu",  # the one ReLU module, called for the fourth time
    ]
    (pattern,) = nncf_patterns(["/conv1/Conv"])
    assert all(re.match(pattern, n) for n in ("/conv1/Conv", "/conv1/Conv/WithoutBiases"))
    assert not re.match(pattern, "/conv1/Conv_1")


def test_fx_keeps_a_functional_call_float_by_scope_kind_and_index() -> None:
    """``::Add::0`` (the model's one ``x + ...``, ONNX ``/Add``) is left out of FX quantization."""
    from model_manager.optim.quantize_torch import calibrate_observed, convert_calibrated, prepare_static

    module = OneSensitiveLayer().eval()
    example = [torch.rand(1, 3, 16, 16)]

    def quantized_adds(float_modules: list[str]) -> int:
        prepared = prepare_static(module, example, float_modules=float_modules)
        calibrate_observed(prepared, [example], 1)
        graph = convert_calibrated(prepared, module).graph
        return sum(1 for n in graph.nodes if "quantized.add" in str(n.target))

    assert quantized_adds([]) == 1
    assert quantized_adds(fx_float_modules(module, ["/Add"])[0]) == 0


# -- through the manager ------------------------------------------------------------------------------
async def test_the_float_layers_are_in_the_manifest_and_info_of_every_int8_engine(tmp_path: Path) -> None:
    """Explicit int8-static on the trained super-resolution default: served, float layers recorded."""
    async with ModelManager(ModelConfig(cache_dir=tmp_path / "cache", device="cpu")) as manager:
        runner = await manager.load_optimized_model("super_resolution", "default", "int8-static")
        info = runner.info
    assert info.strategy == "int8-static" and info.quality["psnr_db"] >= 35.0
    details = info.decision["candidates"][0]["details"]
    assert details["float_layers"] and details["psnr_all_int8_db"] < 35.0
    assert 0.5 < details["int8_mac_share"] < 1.0
    manifest = Path(info.artifact_path, "manifest.json").read_text()
    assert all(name in manifest for name in details["float_layers"])


async def test_int8_that_cannot_pass_within_the_budget_names_the_best_db_and_float_layers(
    tmp_path: Path,
) -> None:
    config = ModelConfig(
        cache_dir=tmp_path / "cache",
        device="cpu",
        quality=QualityGates(int8_min_psnr=120.0),
        int8_search_trials=4,
    )
    async with ModelManager(config) as manager:
        with pytest.raises(QualityGateError) as caught:
            await manager.load_optimized_model("super_resolution", "default", "int8-static")
    message = str(caught.value)
    assert re.search(r"below its 120\.0 dB gate", message)
    assert re.search(
        r"search reached \d+\.\d dB from \d+\.\d dB with \d+ of \d+ layers in float, in 4 trials", message
    )
    assert not list((tmp_path / "cache").glob("super_resolution/*/*/int8-static-*")), "nothing is published"


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["super_resolution", "style_transfer", "interpolation"])
async def test_explicit_int8_static_on_each_default_is_served(tmp_path: Path, model_type: str) -> None:
    async with ModelManager(ModelConfig(cache_dir=tmp_path / "cache", device="cpu")) as manager:
        runner = await manager.load_optimized_model(model_type, "default", "int8-static")
        assert runner.info.quality["psnr_db"] >= 35.0
        assert runner.info.decision["candidates"][0]["details"]["search_psnr_db"] >= 35.0


def test_optimize_text_says_what_the_served_engine_added_to_the_decision() -> None:
    from model_manager.cli.text import int8_text

    details = {
        "float_layers": ["/a/Conv", "/b/Conv"],
        "quantized_layers": 9,
        "int8_mac_share": 0.8,
        "psnr_all_int8_db": 30.0,
        "search_psnr_db": 35.5,
        "search_trials": 10,
        "search_seconds": 2.0,
        "engine_extension": {
            "engine": "int8-static-qop",
            "added": ["/b/Conv"],
            "psnr_decision_db": 33.0,
            "psnr_db": 36.1,
            "trials": 3,
        },
    }
    decision = {"candidates": [{"name": "int8-static-qop", "details": details}]}
    text = int8_text(decision, "int8-static-qop")
    assert "2 of 9 layers in float (/a/Conv, /b/Conv), 80.0% of MACs in INT8" in text
    assert (
        "int8-static-qop kept 1 more layer(s) in float for its own kernels (33.0 -> 36.1 dB in 3 trials)"
        in text
    )
    details["engine_extension"]["added"] = []
    assert "more layer" not in int8_text(decision, "int8-static-qop")
