#!/usr/bin/env bash
# The inference rewrites one by one (torch.compile variants, kernels per forward) at 1024x2048 fp16:
# the rewrite and engine GPU tests, benchmarks/dda_gate.py, then benchmarks/inference.py --ablation.
#   run(command="bash scripts/device/bench_ablation.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# Arguments go to the ablation (e.g. --compile-both-layouts).
. "$(dirname "$0")/session.sh" /tmp/bench_ablation "$@"
step pytest_rewrites 240 python -m pytest -q -p no:cacheprovider --durations=8 --gpu-only \
  test/core/inference test/core/runtime/test_engine.py test/core/ops/test_dda.py
step dda_gate 60 python benchmarks/dda_gate.py
step inference_ablation "$(left)" python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
  --backends cuda --no-peers --no-engine --iters 100 --warmup 10 --ablation --profile "$@"
exit $status
