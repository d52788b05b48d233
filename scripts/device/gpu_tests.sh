#!/usr/bin/env bash
# Every GPU test of the suite: the tests that skip without CUDA (pytest --gpu-only, test/conftest.py),
# about 135 of them, in one call. Run it after any change to kernels, rewrites or the engine:
#   run(command="bash scripts/device/gpu_tests.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# Extra arguments go to pytest after test/ (e.g. -k fused). The CPU-only tests and
# Triton's CPU-interpreter tests are left to the CPU suite (./scripts/test.sh).
. "$(dirname "$0")/session.sh" /tmp/gpu_tests "$@"
step pytest_gpu "$(left)" python -m pytest -q -rs -p no:cacheprovider --durations=15 --gpu-only test/ "$@"
exit $status
