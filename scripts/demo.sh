#!/usr/bin/env bash
# Main job on the shipped demo: set up .venv, build a rosbag2 from real CamVid val frames (+ labels),
# replay it through ECMNet with the shipped CamVid weights, and write masks (output bag + PNGs) and a report.
# Usage: ./scripts/demo.sh [OUT_DIR]     (CAMVID=/path/to/camvid to use another copy; DEVICE=cuda for GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
CAMVID=${CAMVID:-../shared/datasets/camvid}
FRAMES=${FRAMES:-30}
if [ ! -d "$CAMVID/val" ]; then
  echo "error: CamVid not found at $CAMVID (set CAMVID=/path/to/camvid)" >&2
  exit 2
fi
./scripts/setup_env.sh
. .venv/bin/activate
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
rm -rf "$OUT" && mkdir -p "$OUT"
echo "== building demo bag from $FRAMES CamVid val frames"
ecmnet-make-bag "$CAMVID/val" --label-dir "$CAMVID/valannot" --limit "$FRAMES" --out "$OUT/camvid_val_bag"
echo "== replaying it through ECMNet (shipped weights)"
ecmnet-bag-eval "$OUT/camvid_val_bag" --topic /camera/image_raw --gt-topic /camera/labels \
  --device "${DEVICE:-auto}" --out "$OUT/eval"
echo "== colour masks and overlays for the first frames"
mkdir -p "$OUT/frames"
ls "$CAMVID/val" | head -n 3 | while read -r f; do cp "$CAMVID/val/$f" "$OUT/frames/"; done
ecmnet-predict "$OUT/frames" --out "$OUT/masks" --device "${DEVICE:-auto}"
echo "== done: report in $OUT/eval, masks in $OUT/masks and $OUT/eval (output bag)"
