"""Why FX INT8 fails on TransformerNet: activation bits, and what is left with every layer float.

Everything INT8 through ``torch.ao`` FX on the x86 engine, calibrated on two quarters of the
shipped photos and scored (PSNR against eager FP32) on a third, as the model is served:

    python scripts/explore_fx_int8.py 64 style_transfer
    python scripts/explore_fx_int8.py 64 super_resolution

Variants: PyTorch's default x86 qconfig (activations observed with 7 bits,
``HistogramObserver(reduce_range=True)``), the same with every Conv / InstanceNorm module float,
and 8-bit activations with 8- or 7-bit per-channel weights. A diagnosis, not a build step.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch.ao.quantization import QConfig, get_default_qconfig_mapping
from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from mixed_precision import load

from model_manager.optim import quantize_torch as qt
from model_manager.optim.quality import compare
from model_manager.samples import Quarter, sample_batch

W8 = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
W7 = PerChannelMinMaxObserver.with_args(
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-64, quant_max=63
)
A8 = HistogramObserver.with_args(reduce_range=False)


def main(size: int, model_type: str) -> None:
    torch.set_num_threads(2)
    loaded = load(model_type, "default")
    module, desc = loaded.module.eval(), loaded.descriptor

    def inputs(quarter: Quarter) -> tuple[torch.Tensor, ...]:
        arrays = sample_batch(desc, (size, size), batch=4, quarters=(quarter,))
        return tuple(torch.from_numpy(a) for a in arrays)

    calib, test = [inputs("top-left"), inputs("bottom-right")], inputs("top-right")
    reference = module(*test)
    kinds = (torch.nn.Conv2d, torch.nn.InstanceNorm2d)
    layers = [n for n, m in module.named_modules() if isinstance(m, kinds)]
    variants: dict[str, tuple[QConfig | None, list[str]]] = {
        "default x86 (7-bit activations)": (None, []),
        "default, every Conv/InstanceNorm float": (None, layers),
        "8-bit activations, 8-bit weights": (QConfig(activation=A8, weight=W8), []),
        "8-bit activations, 7-bit weights": (QConfig(activation=A8, weight=W7), []),
    }
    qt._use_engine("x86")
    backend = qt._backend_config("x86")
    for label, (qconfig, floats) in variants.items():
        mapping = get_default_qconfig_mapping("x86")
        if qconfig is not None:
            mapping.set_global(qconfig)
        for kind in qt.STATIC_KEEP_FLOAT:
            mapping.set_object_type(kind, None)
        for name in floats:
            mapping.set_module_name(name, None)
        with qt._quiet():
            prepared = prepare_fx(copy.deepcopy(module), mapping, test, backend_config=backend)
            for batch in calib:
                prepared(*batch)
            out = convert_fx(prepared, backend_config=backend)(*test)
        psnr = compare(reference, out, desc.inputs[0].value_range).psnr_db
        print(f"{label:40s} {psnr:6.2f} dB", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 64, args[1] if len(args) > 1 else "style_transfer")
