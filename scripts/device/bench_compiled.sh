#!/usr/bin/env bash
# ECMNet against the peers, all with torch.compile, 1024x2048 fp16 (benchmarks/inference.py --compiled),
# then the node's latency with compile:=true, fp16 (carry .whl/ros312 too).
#   run(command="bash scripts/device/bench_compiled.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# Arguments go to benchmarks/inference.py, e.g. --inductor k=v (compiler options), --fused-edab /
# --without-kernels (extra rows), --profile; with arguments the node latency step is skipped.
. "$(dirname "$0")/session.sh" /tmp/bench_compiled "$@"
step inference_compiled 380 python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
  --backends cuda --no-engine --iters 100 --warmup 10 --compiled --json "$OUT/inference_compiled.json" "$@"
[ $# -gt 0 ] && exit $status
ros_env
step node_latency_compiled "$(left)" env "${ROS_ENV[@]}" python benchmarks/node_latency.py \
  --device cuda --precision fp16 --compile --resolution 1024x2048 --sizes 1024x2048 --frames 30 --timeout 200 \
  --json "$OUT/node_latency_compiled.json"
exit $status
