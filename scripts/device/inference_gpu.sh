#!/usr/bin/env bash
# One GPU session for issue 7 (run tool, kind nvidia-h100-x1, carry [".whl"], timeout 600):
# SS2D parity tests (while mamba-ssm builds for sm_90 in the background), then
# benchmarks/inference.py over every SS2D backend incl. mamba, then the node's end-to-end latency
# over real DDS (ROS 2 cp312 wheels carried in .whl/ros312, see docs/benchmarks/node_latency.md).
# REWRITES=1: the rewrite/engine tests, benchmarks/dda_gate.py, then the compiled comparison with a profile.
# ABLATION=1 runs the rewrite/engine tests, benchmarks/dda_gate.py, then the inference ablation
# (torch.compile variants, kernels per forward) at 1024x2048 fp16; ABLATION_ARGS adds options
# (e.g. --compile-both-layouts).
# PROFILE_COMPILED=1: compiled ECMNet only, with a torch.profiler table of the compiled network.
# INDUCTOR='--inductor k=v ...' with COMPILED=1: only the comparison, with those compiler options.
# KERNELS=1: the opt-in kernels (issue 7): GPU tests of the fused EDAB and SS2D inference kernels and
# of kernel_tuning, the compiled comparison (rows ECMNet, ERFNet and, with the default
# KERNEL_ROWS=--fused-edab, ECMNet+kf = channels_last kernels + fused EDAB; add --channels-last-kernels
# for ECMNet+k) with a profile of each, then benchmarks/edab_fused.py (launch configurations per
# shape). KERNEL_TESTS=1 (a call of its own: together they do not fit in 600 s):
# benchmarks/channels_last_ops.py and every GPU test of the kernels, rewrites and engine.
# DEFAULTS=1: with the kernels on by default for compiled CUDA engines: their GPU tests (fused EDAB,
# kernel_tuning, the engine's option defaults), the compiled comparison ECMNet (defaults) vs ERFNet with
# profiles (DEFAULT_ROWS=--without-kernels adds ECMNet-k), then benchmarks/edab_fused.py.
# EDAB_CONFIGS=1: the fused EDAB's tuned-versus-default GPU test, then benchmarks/edab_fused.py (every
# launch configuration per shape and the per-stage times); a short call (EDAB_CONFIGS_LIMIT s, 190);
# EDAB_EXTRA=512/1/1,1024/2/4 times more configurations (give it a warm Triton cache or a longer limit).
# DDA_SWEEP=1: the engine's kernel-option tests on the GPU, then benchmarks/dda_gate.py --sweep with fp32
# means (the fused EDAB's DDA input): block sizes and warps.
# CONVS=1: the conv + PReLU kernel (EDAB's 3x1 / 1x3 and the stem's 3x3 through channels_last_ops,
# cuDNN where the tuner finds it faster): its GPU tests and the fused EDAB stage's with it, then
# benchmarks/channels_last_ops.py --sections conv (every launch configuration per shape vs cuDNN;
# CONVS_BENCH=0 skips it).
# DEFAULTS_TESTS=0 with DEFAULTS=1 skips its tests (after a CONVS=1 call on the same code);
# DEFAULTS_THEN_TESTS=1 runs the fused-EDAB and engine GPU tests after the comparison instead of
# benchmarks/edab_fused.py; DEFAULTS_ONLY=1 runs neither (the comparison alone; DEFAULTS_PROFILE=
# drops its profile).
# GPU_TESTS=1: every GPU test of the kernel tuning (two real processes and the cache file included),
# channels_last ops, inference rewrites and engine.
# COMPILED=1 runs only the compiled comparison (ECMNet vs peers, all with torch.compile) at
# 1024x2048 fp16 and the node latency with compile:=true, fp16 (carry .whl/ros312).
. "$(dirname "$0")/session.sh" /tmp/inference_gpu

if [ -n "${EDAB_CONFIGS:-}" ]; then
  step pytest_tuned 80 python -m pytest -q -p no:cacheprovider test/test_edab_fused.py -k tuned
  step edab_fused $(( ${EDAB_CONFIGS_LIMIT:-190} - SECONDS )) python benchmarks/edab_fused.py \
    ${EDAB_EXTRA:+--extra-candidates $EDAB_EXTRA}
  exit $status
fi
if [ -n "${CONVS:-}" ]; then
  step pytest_convs 300 python -m pytest -q -p no:cacheprovider --durations=5 test/test_channels_last_ops.py \
    test/test_edab_fused.py test/test_inference_rewrites.py -k "(not interpreter) and (conv or fused_stage or True)"
  [ "${CONVS_BENCH:-1}" = 0 ] || step conv_ops $(( 585 - SECONDS )) python benchmarks/channels_last_ops.py --sections conv
  exit $status
fi
if [ -n "${GPU_TESTS:-}" ]; then
  step pytest_gpu $(( 585 - SECONDS )) python -m pytest -q -p no:cacheprovider --durations=10 test/test_kernel_tuning.py \
    test/test_channels_last_ops.py test/test_inference_rewrites.py test/test_engine.py -k "not interpreter"
  exit $status
fi
if [ -n "${DDA_SWEEP:-}" ]; then
  step pytest_engine_defaults 90 python -m pytest -q -p no:cacheprovider test/test_engine.py -k kernel_options
  step dda_sweep_fused $(( 585 - SECONDS )) python benchmarks/dda_gate.py --sweep --fp32-means
  exit $status
fi
if [ -n "${DEFAULTS:-}" ]; then
  [ "${DEFAULTS_TESTS:-1}" = 0 ] || step pytest_defaults 170 python -m pytest -q -p no:cacheprovider --durations=5 test/test_kernel_tuning.py \
    test/test_edab_fused.py test/test_engine.py -k "(not interpreter) and (edab or tuning or tuned or kernel_options)"
  step inference_defaults 300 python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
    --backends cuda --peers ERFNet --iters 100 --warmup 10 --compiled --compiled-only ${DEFAULT_ROWS:-} \
    --no-engine ${DEFAULTS_PROFILE---profile} --json "$OUT/inference_defaults.json"
  if [ -n "${DEFAULTS_ONLY:-}" ]; then
    :
  elif [ -n "${DEFAULTS_THEN_TESTS:-}" ]; then
    step pytest_fused_convs $(( 585 - SECONDS )) python -m pytest -q -p no:cacheprovider --durations=10 \
      test/test_edab_fused.py test/test_engine.py -k "(not interpreter) and (edab or tuned or kernel_options)"
  else
    step edab_fused $(( 585 - SECONDS )) python benchmarks/edab_fused.py
  fi
  exit $status
fi
if [ -n "${KERNEL_TESTS:-}" ]; then
  step channels_last_ops 150 python benchmarks/channels_last_ops.py
  step pytest_kernels $(( 585 - SECONDS )) python -m pytest -q -p no:cacheprovider --durations=15 \
    test/test_edab_fused.py test/test_channels_last_ops.py test/test_inference_rewrites.py test/test_engine.py \
    -k "not interpreter"
  exit $status
fi
if [ -n "${KERNELS:-}" ]; then
  step pytest_fused 150 python -m pytest -q -p no:cacheprovider --durations=5 test/test_kernel_tuning.py \
    test/test_ss2d_backends.py::test_cuda_inference_kernel_matches_sequential test/test_edab_fused.py -k "not interpreter"
  step inference_kernels 300 python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
    --backends cuda --peers ERFNet --iters 100 --warmup 10 --compiled --compiled-only ${KERNEL_ROWS:---fused-edab} \
    --no-engine --profile --json "$OUT/inference_kernels.json"
  step edab_fused $(( 585 - SECONDS )) python benchmarks/edab_fused.py
  exit $status
fi
if [ -n "${ABLATION:-}${REWRITES:-}" ]; then
  step pytest_rewrites 240 python -m pytest -q -p no:cacheprovider --durations=8 test/test_inference_rewrites.py \
    test/test_engine.py
  step dda_gate 60 python benchmarks/dda_gate.py
fi
if [ -n "${REWRITES:-}" ]; then
  step inference_compiled $(( 585 - SECONDS )) python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
    --backends cuda --no-engine --iters 100 --warmup 10 --compiled --profile --json "$OUT/inference_compiled.json"
  exit $status
fi
if [ -n "${ABLATION:-}" ]; then
  step inference_ablation $(( 585 - SECONDS )) python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
    --backends cuda --no-peers --no-engine --iters 100 --warmup 10 --ablation --profile ${ABLATION_ARGS:-}
  exit $status
fi

ros_env() {
  P=/tmp/rosp
  [ -d $P ] || python -m pip install -q --no-index --no-deps --prefix $P .whl/ros312/*.whl
  SP=$(dirname "$(find $P -type d -path '*-packages/rclpy' | head -1)")
  LIB=$(dirname "$(find $P -name librcl.so | head -1)")
  ROS_ENV=(PYTHONPATH=.:$SP LD_LIBRARY_PATH=$LIB:$(ls -d "$SP"/ros_*.libs | tr '\n' ':') RMW_IMPLEMENTATION=rmw_fastrtps_cpp)
}

if [ -n "${PROFILE_COMPILED:-}" ]; then
  step inference_compiled_profile 560 python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
    --backends cuda --no-engine --no-peers --iters 100 --warmup 10 --compiled --profile
  exit $status
fi
if [ -n "${COMPILED:-}" ]; then
  step inference_compiled 380 python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 \
    --backends cuda --no-engine --iters 100 --warmup 10 --compiled --json "$OUT/inference_compiled.json" \
    ${INDUCTOR:+$INDUCTOR}
  [ -n "${INDUCTOR:-}" ] && exit $status
  ros_env
  step node_latency_compiled $(( 585 - SECONDS )) env "${ROS_ENV[@]}" python benchmarks/node_latency.py \
    --device cuda --precision fp16 --compile --resolution 1024x2048 --sizes 1024x2048 --frames 30 --timeout 200 \
    --json "$OUT/node_latency_compiled.json"
  exit $status
fi

( bash scripts/device/build_mamba_ssm.sh > "$OUT/mamba_build.txt" 2>&1; echo "rc=$?" >> "$OUT/mamba_build.txt" ) &
build=$!
step pytest_ss2d 150 python -m pytest -q test/test_ss2d_backends.py
wait $build
tail -2 "$OUT/mamba_build.txt"
step inference 300 env PYTHONPATH=.whl/mamba_site:.whl/mamba_deps:$PYTHONPATH python benchmarks/inference.py \
  --sizes 360x480,1024x1024,1024x2048 --precisions fp32,fp16 --iters 100 --warmup 10 --profile \
  --json "$OUT/inference.json"

ros_env
step node_latency $(( 585 - SECONDS )) env "${ROS_ENV[@]}" python benchmarks/node_latency.py --device cuda --frames 30 --timeout 60 \
  --json "$OUT/node_latency.json"
exit $status
