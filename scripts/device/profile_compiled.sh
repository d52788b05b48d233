#!/usr/bin/env bash
# Where the compiled network's time goes: ECMNet alone with torch.compile at 1024x2048 fp16 and a
# torch.profiler table of its kernels (benchmarks/inference.py --profile).
#   run(command="bash scripts/device/profile_compiled.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# Arguments go to benchmarks/inference.py (e.g. --fused-edab, --inductor k=v).
. "$(dirname "$0")/session.sh" /tmp/profile_compiled "$@"
step inference_compiled_profile "$(left)" python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
  --backends cuda --no-engine --no-peers --iters 100 --warmup 10 --compiled --profile "$@"
exit $status
