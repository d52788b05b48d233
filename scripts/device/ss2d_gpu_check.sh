#!/usr/bin/env bash
# One GPU session for issue 3 (run tool, kind nvidia-h100-x1, carry [".whl"], timeout 600):
# builds mamba-ssm for sm_90 in the background, meanwhile runs the SS2D parity tests and the
# kernel's chunk check and tile sweep, then the parity tests again with mamba-ssm and the
# benchmark of every backend. FULL_SUITE=1 also runs the whole test suite on the GPU with the
# time left. Logs go to $OUT (the run tool brings them back).
. "$(dirname "$0")/session.sh" /tmp/ss2d_gpu_check "$@"

( bash scripts/device/build_mamba_ssm.sh > "$OUT/mamba_build.txt" 2>&1; echo "rc=$?" >> "$OUT/mamba_build.txt" ) &
build=$!
step pytest_ss2d 200 python -m pytest -q test/core/ops/test_ss2d_backends.py test/core/ops/test_ss2d_reference.py
step check_chunks 60 python benchmarks/ss2d.py --check-chunks --sizes 360x480
step sweep 150 python benchmarks/ss2d.py --sweep --sizes 1024x2048 --iters 50 --warmup 5
wait $build
tail -3 "$OUT/mamba_build.txt"
export PYTHONPATH=.whl/mamba_site:.whl/mamba_deps:$PYTHONPATH
step pytest_ss2d_mamba 120 python -m pytest -q -x test/core/ops/test_ss2d_backends.py -k "match or auto"
step bench_ss2d 180 python benchmarks/ss2d.py --iters 100 --warmup 10
du -sh .whl/mamba_site
# whatever time is left of a 585 s call: the whole suite on the GPU
[ -n "${FULL_SUITE:-}" ] && [ "$(left)" -gt 60 ] && step pytest_all_gpu "$(left)" python -m pytest -q -rs test/
exit $status
