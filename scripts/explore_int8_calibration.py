"""Everything-INT8 ONNX Runtime Q/DQ and QOperator PSNR per calibration size and method (exploration).

For one model: export, quant_pre_process, calibrate on the calibration quarters at 128 and 256
with MinMax and Percentile, write both static formats and score them against eager FP32 on four
held-out crops at 256 (the numbers behind README's calibration table). Entropy is left out: it
scored 6.7 dB on ESPCN and did not finish on TransformerNet in 8 minutes. Usage::

    python scripts/explore_int8_calibration.py interpolation default
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from model_manager.optim.calibration import ArrayCalibrationReader, held_out_set, sample_calibration_set
from model_manager.optim.intermediates import onnx_from_torch
from model_manager.optim.quality import psnr
from model_manager.optim.quantize_onnx import (
    StaticInt8Settings,
    preprocess_for_quantization,
    qdq_from_onnx,
    qoperator_from_onnx,
    ranges_from_calibration,
)
from model_manager.optim.settings import BuildSettings
from model_manager.registry import ModelRegistry
from model_manager.runners.ort_session import session_options


def main(model_type: str, name: str) -> None:
    torch.set_num_threads(2)
    loaded = ModelRegistry.with_builtins().get(model_type, name).load()
    module, d = loaded.module, loaded.descriptor
    work = Path(tempfile.mkdtemp())
    onnx_from_torch(module, d, work, BuildSettings())
    preprocess_for_quantization(work / "model.onnx", work / "pre.onnx")
    names = [x.name for x in d.inputs]
    items = held_out_set(d, d.fit_size(256, 256), 4)
    with torch.no_grad():
        ref = np.concatenate([module(*map(torch.from_numpy, it)).numpy() for it in items])

    def score(path: Path) -> float:
        sess = ort.InferenceSession(str(path), session_options(2), providers=["CPUExecutionProvider"])
        out = np.concatenate([sess.run(None, dict(zip(names, it)))[0] for it in items])
        return round(psnr(ref, out, d.output.value_range), 2)

    for size in (128, 256):
        crops = sample_calibration_set(d, d.fit_size(size, size), 8)
        for method in ("minmax", "percentile"):
            st = StaticInt8Settings(method=method)
            t0 = time.time()
            ranges_from_calibration(
                work / "pre.onnx", ArrayCalibrationReader(d, crops), st, work / "cal.json"
            )
            qdq_from_onnx(work / "pre.onnx", work / "qdq.onnx", work / "cal.json", st)
            qoperator_from_onnx(work / "pre.onnx", work / "qop.onnx", work / "cal.json", st)
            qdq, qop = score(work / "qdq.onnx"), score(work / "qop.onnx")
            print(
                f"{model_type}/{name} calibrated at {size}, {method}: Q/DQ {qdq} dB, QOperator {qop} dB "
                f"({time.time() - t0:.1f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main(*sys.argv[1:3])
