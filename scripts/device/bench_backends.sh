#!/usr/bin/env bash
# SS2D backends end to end (docs/benchmarks/inference.md, node_latency.md): the SS2D GPU tests while
# mamba-ssm builds for sm_90, then benchmarks/inference.py over every SS2D backend (mamba included) at
# 360x480, 1024x1024 and 1024x2048 in fp32 and fp16, then the node's latency over real DDS.
#   run(command="bash scripts/device/bench_backends.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# Needs .whl/mamba (sdist) and .whl/ros312 (ROS 2 cp312 wheels, docs/benchmarks/node_latency.md).
. "$(dirname "$0")/session.sh" /tmp/bench_backends "$@"
( bash scripts/device/build_mamba_ssm.sh > "$OUT/mamba_build.txt" 2>&1; echo "rc=$?" >> "$OUT/mamba_build.txt" ) &
build=$!
step pytest_ss2d 150 python -m pytest -q test/core/ops/test_ss2d_backends.py
wait $build
tail -2 "$OUT/mamba_build.txt"
step inference 300 env PYTHONPATH=.whl/mamba_site:.whl/mamba_deps:$PYTHONPATH python benchmarks/inference.py \
  --sizes 360x480,1024x1024,1024x2048 --precisions fp32,fp16 --iters 100 --warmup 10 --profile \
  --json "$OUT/inference.json"
ros_env
step node_latency "$(left)" env "${ROS_ENV[@]}" python benchmarks/node_latency.py --device cuda --frames 30 \
  --timeout 60 --json "$OUT/node_latency.json"
exit $status
