#!/usr/bin/env bash
# GPU checks in one go (under 10 minutes on one GPU: one device call): every `gpu` test, a short benchmark (eager FP32
# vs PyTorch FP16 vs TensorRT FP16 where installed), the AOTInductor row, then the public manager path
# (benchmarks/gpu_manager.py: every strategy through load_optimized_model, CUDA auto's fallback notes,
# a second process's cache hit), its table printed last. Where $OUT is set its rows go to $OUT as JSON.
# Timeouts (issue 18, 570 s in all plus the probe, inside one 600 s device call): gpu tests 120 s
# (was 300), benchmark 90 s (was 150), aoti 90 s (was 180), manager path 270 s; a step cut by its
# timeout exits 124 in the status line.
# Usage, from the repository root with the project installed: bash scripts/gpu_check.sh [PYTHON]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
"$PY" - <<'PY'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
print("tensorrt installed:", importlib.util.find_spec("tensorrt") is not None)
PY
timeout 120 "$PY" -m pytest -q -m gpu -rs tests/ ; tests=$?
timeout 90 "$PY" benchmarks/gpu.py --size 256 --iterations 30; bench=$?
# AOTInductor on CUDA (issue 17: kept for CUDA, unmeasured there so far): one model, its compile included.
timeout 90 "$PY" benchmarks/gpu.py --size 256 --iterations 30 --models super_resolution --aoti; aoti=$?
# The manager path on the GPU (issue 18): none, fp16, onnx, tensorrt, tensorrt-int8, auto, and auto
# loaded again in a second process; exits 1 when auto raised or served FP32 unexplained, the second
# load missed the cache, or a served row is below its PSNR gate.
timeout 270 "$PY" benchmarks/gpu_manager.py --size 256 --iterations 30 ${OUT:+--json "$OUT/gpu_manager.json"}; manager=$?
echo "gpu tests exit $tests, benchmark exit $bench, aoti benchmark exit $aoti, manager path exit $manager"
exit $(( tests != 0 && tests != 5 || bench != 0 || aoti != 0 || manager != 0 ))
