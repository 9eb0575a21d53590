"""Every architecture saved in every published layout is detected and loads strictly, bit-identically."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_manager.checkpoint import (
    canonicalize,
    detect_architecture,
    load_checkpoint,
    read_checkpoint,
    weights_hash,
)
from model_manager.errors import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    UnsupportedArchitectureError,
)
from model_manager.models import all_architectures

from .conftest import sample_inputs, small_config

ARCH_IDS = sorted(all_architectures())


def _layouts(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """The wrappings published files use."""
    return {
        "bare": state,
        "params_ema": {"params_ema": state},
        "params": {"params": state},
        "state_dict": {"state_dict": state, "epoch": torch.tensor(3)},
        "ddp_module_prefix": {f"module.{k}": v for k, v in state.items()},
    }


def _outputs(module: torch.nn.Module, descriptor) -> torch.Tensor:
    inputs = [torch.from_numpy(x) for x in sample_inputs(descriptor, (64, 64))]
    with torch.inference_mode():
        return module(*inputs)


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_every_layout_detects_and_loads_identically(arch_id: str, tmp_path: Path) -> None:
    arch = all_architectures()[arch_id]
    ref = arch.create(small_config(arch_id), seed=1)
    state = ref.module.state_dict()
    expected = _outputs(ref.module, ref.descriptor)
    for layout, obj in _layouts(state).items():
        for suffix in (".pth", ".safetensors"):
            if suffix == ".safetensors" and layout == "state_dict":
                continue  # safetensors holds flat tensor dicts only
            path = tmp_path / f"{layout}{suffix}"
            if suffix == ".safetensors":
                flat = obj if layout != "params_ema" and layout != "params" else obj[layout]
                save_file({k: v.contiguous() for k, v in flat.items()}, str(path))
            else:
                torch.save(obj, path)
            loaded = load_checkpoint(path)
            assert loaded.architecture == arch_id, (layout, suffix)
            assert dict(loaded.hyperparameters) == dict(ref.hyperparameters)
            assert torch.equal(_outputs(loaded.module, loaded.descriptor), expected), (layout, suffix)


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_no_other_architecture_claims_a_checkpoint(arch_id: str) -> None:
    state = all_architectures()[arch_id].create(small_config(arch_id)).module.state_dict()
    claimed = [a.id for a in all_architectures().values() if a.matches(a.prepare_state_dict(state))]
    assert claimed == [arch_id]
    assert detect_architecture(state).id == arch_id


def test_legacy_instancenorm_running_stats_are_dropped_exactly(tmp_path: Path) -> None:
    arch = all_architectures()["TransformerNet"]
    ref = arch.create(small_config("TransformerNet"))
    state = dict(ref.module.state_dict())
    norms = [
        k[: -len(".weight")] for k in state if k.split(".")[-2].startswith("in") and k.endswith("weight")
    ]
    assert "res1.in1" in norms and "in5" in norms
    for n in norms:  # what pre-0.4 PyTorch saved for InstanceNorm2d(affine=True)
        c = state[f"{n}.weight"].shape[0]
        state[f"{n}.running_mean"] = torch.zeros(c)
        state[f"{n}.running_var"] = torch.ones(c)
    torch.save(state, tmp_path / "candy.pth")
    loaded = load_checkpoint(tmp_path / "candy.pth")
    assert loaded.architecture == "TransformerNet"
    assert torch.equal(_outputs(loaded.module, loaded.descriptor), _outputs(ref.module, ref.descriptor))
    # any other extra key is still an error, named
    state["in1.num_batches_tracked"] = torch.tensor(0)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(StateDictMismatchError, match=r"in1\.num_batches_tracked") as info:
        load_checkpoint(tmp_path / "extra.pth")
    assert info.value.unexpected == ("in1.num_batches_tracked",)


def test_missing_key_is_named(tmp_path: Path) -> None:
    state = all_architectures()["ESPCN"].create(small_config("ESPCN")).module.state_dict()
    del state["conv3.bias"]
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(StateDictMismatchError, match=r"conv3\.bias") as info:
        load_checkpoint(tmp_path / "m.pth")
    assert info.value.missing == ("conv3.bias",)


def test_prefix_is_stripped_only_when_every_key_has_it() -> None:
    state = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert set(canonicalize(state)) == {"module.a", "b"}
    assert set(canonicalize({"module.a": torch.zeros(1), "module.b": torch.zeros(1)})) == {"a", "b"}


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_objects_are_refused_without_running(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    payload = {"conv1.weight": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        read_checkpoint(path)
    assert not marker.exists()


def test_unknown_architecture_lists_what_was_tried(tmp_path: Path) -> None:
    torch.save({"encoder.layer0.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "x.pth")
    with pytest.raises(UnsupportedArchitectureError) as info:
        load_checkpoint(tmp_path / "x.pth")
    assert set(info.value.tried) == set(ARCH_IDS)
    for arch_id in ARCH_IDS:
        assert arch_id in str(info.value)
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "absent.pth", "does not exist"),
        (b"not a zip", "bad.pth", "cannot read"),
        (b"xx", "weights.onnx", "expected a checkpoint with suffix"),
        (b"garbage", "bad.safetensors", "cannot read"),
    ],
)
def test_unreadable_files_give_clear_errors(tmp_path: Path, content, name, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


def test_non_tensor_entries_are_rejected(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "note": "hello"}, tmp_path / "n.pth")
    with pytest.raises(CheckpointError, match="not tensors"):
        canonicalize(read_checkpoint(tmp_path / "n.pth"))


def test_weights_hash_follows_bytes_not_location(tmp_path: Path) -> None:
    state = all_architectures()["ESPCN"].create(small_config("ESPCN")).module.state_dict()
    h = weights_hash(state)
    assert h == weights_hash({k: v.clone() for k, v in state.items()})
    changed = {k: v.clone() for k, v in state.items()}
    changed["conv4.bias"][0] += 1e-3
    assert weights_hash(changed) != h
    as_half = {k: v.half() for k, v in state.items()}
    assert weights_hash(as_half) != h
