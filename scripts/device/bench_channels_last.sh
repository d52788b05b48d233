#!/usr/bin/env bash
# The channels_last kernels (depthwise conv, bilinear resize, conv + PReLU; cuDNN where the tuner finds
# it faster): their GPU tests and the fused EDAB stage's, then benchmarks/channels_last_ops.py.
# Arguments go to the benchmark: --sections conv times only the conv + PReLU shapes (every launch
# configuration per shape against cuDNN); --no-bench runs only the tests.
#   run(command="bash scripts/device/bench_channels_last.sh --sections conv", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
. "$(dirname "$0")/session.sh" /tmp/bench_channels_last "$@"
step pytest_channels_last 300 python -m pytest -q -p no:cacheprovider --durations=5 --gpu-only \
  test/core/ops/test_channels_last.py test/core/inference test/core/ops/test_tuning.py
[ "${1:-}" = --no-bench ] && exit $status
step channels_last_ops "$(left)" python benchmarks/channels_last_ops.py "$@"
exit $status
