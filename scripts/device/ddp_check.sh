#!/usr/bin/env bash
# One-off multi-GPU check of the training pipeline on nccl (run tool, kind nvidia-h200-x2):
#   run(command="bash scripts/device/ddp_check.sh", kind="nvidia-h200-x2",
#       carry=[".data/camvid.tar"], timeout_s=420)
# Needs the CamVid pack (ecmnet-pack-data --layout camvid --root ../shared/datasets/camvid); carry
# .data/pydeps (pure-Python copies of yaml/, tqdm/) too only if the machine lacks them (the H100 image has them).
# 1. DDP gradients == single-process gradients of the whole batch (SyncBN in train mode; plain BN in eval mode)
# 2. a short 2-process CamVid run with SyncBN on GPU-preloaded data, then an exact `--resume auto`
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
python -c "import yaml, tqdm" 2>/dev/null || export PYTHONPATH=.:.data/pydeps
OUT=${OUT:-/tmp/ddp_check_out}
mkdir -p "$OUT"
LOG="$OUT/ddp_check.txt"
status=0
{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; python -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version())"; } 2>&1 | tee "$LOG"
TR="python -m torch.distributed.run --standalone --nproc_per_node 2"
$TR -m training.ddp_check --device cuda --sync-bn 2>&1 | tee -a "$LOG" || status=1
$TR -m training.ddp_check --device cuda 2>&1 | tee -a "$LOG" || status=1
$TR -m training.train --config config/train_camvid.yaml --layout pack --data-root .data/camvid.tar --out /tmp/ddp_run \
  --batch-size 4 --set train.sync_bn=true --set train.val_every=2 --max-minutes 1.5 2>&1 | tee -a "$LOG" || status=1
# resume reuses the recipe stored in last.pt (2 x 4 per step, SyncBN)
$TR -m training.train --out /tmp/ddp_run --resume auto --max-minutes 0.5 2>&1 | tee -a "$LOG" || status=1
cp /tmp/ddp_run/metrics.csv "$OUT/" 2>/dev/null
echo "ddp_check.sh: $([ $status = 0 ] && echo PASSED || echo FAILED)" | tee -a "$LOG"
exit $status
