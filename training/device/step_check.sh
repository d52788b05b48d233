#!/usr/bin/env bash
# GPU check of the graphed training step (run tool, carry [".data/camvid.tar"], timeout 600):
# its GPU tests, training.throughput at CamVid's recipe (batch 8, 360x480) and the Cityscapes
# recipe's shape (batch 6, 1024x1024 crops of 1024x2048 frames, SGD), then the first 300 steps' loss
# with the eager and the graphed step (training.compare_steps). Raw outputs land in $OUT.
. "$(dirname "$0")/../../scripts/device/session.sh" /tmp/step_check
step pytest_step 200 python -m pytest -q -p no:cacheprovider test/training/test_step.py
step throughput_camvid 200 python -m training.throughput --batch 8 --size 360 480 \
  --variants ${CAMVID_VARIANTS:-fp32,fp32-graph,fp32-compile-graph,bf16-compile-graph} ${PROFILE:+--profile $PROFILE}
step compare_steps $(( 560 - SECONDS > 60 ? 150 : 1 )) python -m training.compare_steps --steps 300 \
  --set dataset.layout=pack --set dataset.root=.data/camvid.tar --out "$OUT/compare_steps.csv" ${COMPARE_SET:-}
step throughput_cityscapes $(( 590 - SECONDS )) python -m training.throughput --batch 6 --size 1024 2048 \
  --crop 1024 1024 --classes 19 --optim sgd --iters 20 --variants ${CS_VARIANTS:-bf16,bf16-compile-graph,fp32-graph}
exit $status
