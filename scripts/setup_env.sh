#!/usr/bin/env bash
# Create .venv with pinned torch, the ROS 2 Python wheels (+ ../shared/ros2-extra) and ecmnet (editable).
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Pinned torch first, so nothing below pulls another version. This project's machines serve the CPU
# build (2.13.0+cpu) from their local wheel folder; PyPI's Linux wheels are CUDA builds (several GB),
# so elsewhere set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for a CPU-only venv.
python -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
python -m pip install -q numpy opencv-python-headless pillow pyyaml tqdm tensorboard matplotlib rosbags onnx onnxruntime pytest
python -m pip install -q ros-kilted-rclpy ros-kilted-sensor-msgs ros-kilted-std-msgs ros-kilted-diagnostic-msgs \
  ros-kilted-rmw-fastrtps-cpp ros-kilted-lifecycle-msgs
# The ROS 2 launch / CLI stack (launch, launch_ros, ros2 launch/run/pkg/lifecycle/param ...) and
# vision_msgs are not on PyPI: wheels built from the official sources in ../shared/ros2-extra
# (its README). Re-installed only when those wheels change. Without that folder the launch,
# lifecycle-CLI and LabelInfo tests skip.
EXTRA=../shared/ros2-extra
if [ -f "$EXTRA/install.sh" ]; then
  want=$(cd "$EXTRA" && stat -c '%n %s %Y' install.sh wheels/*.whl | sha256sum | cut -d' ' -f1)
  if [ "$(cat .venv/.ros2-extra.stamp 2>/dev/null)" != "$want" ]; then
    bash "$EXTRA/install.sh" > .venv/.ros2-extra.log 2>&1 || { cat .venv/.ros2-extra.log >&2; exit 1; }
    echo "$want" > .venv/.ros2-extra.stamp
  fi
else
  echo "note: $EXTRA not found: ros2 launch / lifecycle / vision_msgs tests will skip"
fi
# colcon: test/ros/test_launch.py builds the package in a temporary workspace, as ROS users do
python -m pip install -q colcon-common-extensions
# test-only: test_conversions.py compares against the PyPI cv-bridge port (never used at run time)
python -m pip install -q cv-bridge
# cityscapesscripts: reference evaluator our mIoU is cross-checked against (test/training/test_metrics.py)
python -m pip install -q cityscapesscripts
# test-only: Triton's CPU interpreter runs our GPU kernels' code on CPU tensors
# (test/core/ops/test_channels_last.py); without it those tests skip
python -m pip install -q triton || echo "note: triton not installable here; its interpreter tests will skip"
python -m pip install -q --no-deps -e .
