#!/usr/bin/env bash
# The Triton inference kernels as compiled CUDA engines use them by default: their GPU tests (fused
# EDAB, kernel tuning, the SS2D inference kernel, the engine's option defaults), the compiled
# comparison ECMNet (defaults) vs ERFNet with a profile of each, then benchmarks/edab_fused.py
# (launch configurations per shape). docs/benchmarks/inference.md.
#   run(command="bash scripts/device/bench_kernels.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# Arguments go to the comparison: --without-kernels adds the row ECMNet-k (kernels off).
. "$(dirname "$0")/session.sh" /tmp/bench_kernels "$@"
step pytest_kernels 170 python -m pytest -q -p no:cacheprovider --durations=5 test/core/ops/test_tuning.py \
  test/core/ops/test_ss2d_backends.py::test_cuda_inference_kernel_matches_sequential \
  test/core/inference/test_fused_edab.py test/core/runtime/test_engine.py \
  -k "(not interpreter) and (edab or tuning or tuned or kernel_options or inference_kernel or second_process)"
step inference_kernels 300 python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
  --backends cuda --peers ERFNet --iters 100 --warmup 10 --compiled --compiled-only --no-engine --profile \
  --json "$OUT/inference_kernels.json" "$@"
step edab_fused "$(left)" python benchmarks/edab_fused.py
exit $status
