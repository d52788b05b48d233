#!/usr/bin/env bash
# Issue 20 item 4 on the GPU: compile the shipped weights ahead of time for this GPU
# (ecmnet-export --aoti, 1024x2048 fp16, verified against PyTorch), then benchmarks/cold_start.py:
# process start -> first mask for the checkpoint, compile=True and the package, with their masks
# compared (goal: the package <= 15 s at compiled speed). Not yet run on a GPU.
#   run(command="bash scripts/device/aoti_cold_start.sh", kind="nvidia-h200", carry=[".whl"], timeout_s=600)
# The package stays in /tmp on the device (rerun the export step in a later call if it went).
. "$(dirname "$0")/session.sh" /tmp/aoti_cold_start "$@"
PKG=/tmp/ecmnet_camvid_1024x2048_fp16.pt2
step export_aoti 300 python -m ecmnet_core.cli.export --weights ecmnet_core/weights/ecmnet_camvid.pt \
  --aoti "$PKG" --size 1024x2048 --device cuda --fp16
step cold_start "$(left)" python -m benchmarks.cold_start --package "$PKG" --device cuda --precision fp16 \
  --size 1024x2048 --frames 50 --json "$OUT/cold_start.json"
exit $status
