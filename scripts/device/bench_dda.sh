#!/usr/bin/env bash
# The fused dual-direction-attention kernel: its GPU tests and the engine's kernel-option tests, then
# benchmarks/dda_gate.py. Arguments go to the benchmark; the block-size and warp sweep with fp32
# means (the fused EDAB's DDA input) is: bash scripts/device/bench_dda.sh --sweep --fp32-means
#   run(command="bash scripts/device/bench_dda.sh --sweep --fp32-means", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
. "$(dirname "$0")/session.sh" /tmp/bench_dda "$@"
step pytest_dda 120 python -m pytest -q -p no:cacheprovider --gpu-only test/core/ops/test_dda.py \
  test/core/runtime/test_engine.py -k "dda or kernel_options"
step dda_gate "$(left)" python benchmarks/dda_gate.py "$@"
exit $status
