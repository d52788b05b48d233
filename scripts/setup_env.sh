#!/usr/bin/env bash
# Create .venv with pinned CPU torch, the ROS 2 Python wheels and ecmnet (editable).
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Pinned CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q numpy opencv-python-headless pillow pyyaml tqdm tensorboard matplotlib rosbags onnx onnxruntime pytest
python -m pip install -q ros-kilted-rclpy ros-kilted-sensor-msgs ros-kilted-std-msgs ros-kilted-diagnostic-msgs \
  ros-kilted-rmw-fastrtps-cpp
# test-only: test_conversions.py compares against the PyPI cv-bridge port (never used at run time)
python -m pip install -q cv-bridge
# cityscapesscripts: reference evaluator our mIoU is cross-checked against (test/training/test_metrics.py)
python -m pip install -q cityscapesscripts
# test-only: Triton's CPU interpreter runs our GPU kernels' code on CPU tensors
# (test/core/ops/test_channels_last.py); without it those tests skip
python -m pip install -q triton || echo "note: triton not installable here; its interpreter tests will skip"
python -m pip install -q --no-deps -e .
