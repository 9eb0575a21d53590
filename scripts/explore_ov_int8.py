"""Which layers must NNCF keep in float for a default model to pass its INT8 gate? Prints a table.

For one default model: export the verified FP32 ONNX, convert to IR, then quantize with each
preset and each candidate ignored scope (no layer, each single conv, first + last), and report
PSNR against FP32 on the held-out photos at the build's size. The chosen recipes live in
``model_manager/optim/ov_ir.py`` (OV_INT8_RECIPES). Usage::

    python scripts/explore_ov_int8.py super_resolution espcn-x2 [--threads 2]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from model_manager.optim.calibration import sample_calibration_set
from model_manager.optim.intermediates import (
    CALIBRATION_SAMPLES,
    calibration_size,
    export_inputs,
    onnx_from_torch,
)
from model_manager.optim.ov_ir import OvInt8Recipe, int8_ir_from_ir, ir_from_onnx
from model_manager.optim.quality import compare
from model_manager.optim.settings import BuildSettings
from model_manager.registry import ModelRegistry
from model_manager.runners import OvRunner, RunnerInfo


def conv_names(xml: Path) -> list[str]:
    """Convolution node names in the IR, in graph order."""
    text = xml.read_text()
    return re.findall(
        r'<layer id="\d+" name="([^"]+)" type="(?:Convolution|GroupConvolution|ConvolutionBackpropData)"',
        text,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_type")
    ap.add_argument("name")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = ModelRegistry.with_builtins().get(args.model_type, args.name).load()
    module, descriptor = loaded.module, loaded.descriptor
    settings = BuildSettings(opt_size=descriptor.profile.opt[descriptor.inputs[0].name][-2:])
    inputs = [t.numpy() for t in export_inputs(descriptor, settings)]
    with torch.no_grad():
        reference = module(*(torch.from_numpy(x) for x in inputs)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        onnx_from_torch(module, descriptor, t, settings)
        ir_from_onnx(t / "model.onnx", t / "fp32.xml")
        convs = conv_names(t / "fp32.xml")
        data = sample_calibration_set(descriptor, calibration_size(descriptor, settings), CALIBRATION_SAMPLES)
        scopes = [(), *[(re.escape(c),) for c in convs], (re.escape(convs[0]), re.escape(convs[-1]))]
        print(f"{len(convs)} convolutions: {convs}")
        print(f"{'preset':12} {'kept in float':60} PSNR dB")
        for preset in ("performance", "mixed"):
            for scope in scopes:
                if (
                    len(convs) > 6
                    and len(scope) == 1
                    and scope[0] not in (re.escape(convs[0]), re.escape(convs[-1]))
                ):
                    continue  # deep nets: only the ends
                out_xml = t / "int8.xml"
                int8_ir_from_ir(t / "fp32.xml", out_xml, data, OvInt8Recipe(ignored=scope, preset=preset))
                info = RunnerInfo(
                    descriptor.model_type, "explore", "openvino-int8", "openvino", "cpu", "int8"
                )
                runner = OvRunner(out_xml, descriptor, info, num_threads=args.threads)
                q = compare(reference, np.asarray(runner(*inputs)), descriptor.output.value_range)
                print(f"{preset:12} {', '.join(scope) or '-':60} {q.psnr_db:.2f}")


if __name__ == "__main__":
    main()
