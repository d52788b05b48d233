#!/usr/bin/env bash
# One link of a chained CamVid training on the GPU device (`run` tool); repeat until the log says
# "done: finished". Each call resumes from .data/runs/camvid/last.pt (carried in) and returns
# last.pt, metrics.csv, log.txt and - only when this call improved val mIoU - best.pt in $OUT.
#   carry: .data/camvid.tar (ecmnet-pack-data --layout camvid ...), .data/runs/camvid, .data/pydeps (optional)
#   env:   MAX_MINUTES (default 8.5) - training stops cleanly after the last epoch that fits
# Extra arguments go to ecmnet-train (e.g. --epochs 100 --set train.val_every=5). The first call starts
# from config/train_camvid.yaml; later calls reuse the recipe stored in last.pt (extra arguments on top).
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
# compiled kernels stay on the warm machine between back-to-back links (train.compile: true)
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.data/inductor_cache}
python -c "import yaml, tqdm" 2>/dev/null || export PYTHONPATH=.:.data/pydeps
RUN=.data/runs/camvid
OUT=${OUT:-/tmp/camvid_out}
mkdir -p "$RUN" "$OUT"
rm -f "$RUN/best.pt"            # a best.pt in $OUT always means "improved in this call"
if [ -f "$RUN/last.pt" ]; then SRC=(--resume auto); else SRC=(--config config/train_camvid.yaml); fi
python -m training.train "${SRC[@]}" --layout pack --data-root .data/camvid.tar --out "$RUN" \
  --max-minutes "${MAX_MINUTES:-8.5}" --set train.progress=off "$@" 2>&1 | tee "$OUT/log.txt"
rc=$?
cp "$RUN/last.pt" "$RUN/metrics.csv" "$OUT/" 2>/dev/null
[ -f "$RUN/best.pt" ] && cp "$RUN/best.pt" "$OUT/"
exit $rc
