"""The node against giant frames and checkpoints whose parts disagree (issue 18), over real DDS.

Frames over `max_input_pixels` are bad frames: rejected from the message's width/height or the
jpeg/png header before any decoding, logged (throttled) and counted, while the node keeps serving.
Checkpoints are validated by the same code as the command-line tools, so the node refuses to start
with the same one-line error.
"""
import array
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ecmnet_core.runtime.checkpoint import CheckpointError  # noqa: E402
from ecmnet_ros.conversions import encode_compressed  # noqa: E402
from ecmnet_ros.params import ConfigError  # noqa: E402
from ecmnet_ros.segmentation_node import SegmentationNode  # noqa: E402
from ros_harness import Probe, image_msg, isolate_ros_domain, stamp  # noqa: E402

TIMEOUT = 60.0


def _png_claiming(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_frames_over_the_cap_are_rejected_and_the_node_keeps_serving(harness, tiny_checkpoint, capfd):
    cap = 64 * 96                     # the tiny checkpoint's own input size fits exactly
    node = harness.add(SegmentationNode("seg_cap", context=harness.context, parameter_overrides=[
        Parameter("weights", value=str(tiny_checkpoint)), Parameter("device", value="cpu"),
        Parameter("input_topics", value=["/cap/image_raw", "/capz/image_raw/compressed"]),
        Parameter("qos_reliability", value="reliable"), Parameter("error_log_period", value=0.0),
        Parameter("max_input_pixels", value=cap)]))
    probe = Probe(harness, "probe_cap")
    probe.watch("/cap/segmentation/mask", Image)
    probe.publisher("/cap/image_raw", Image)
    probe.publisher("/capz/image_raw/compressed", CompressedImage)
    assert probe.wait_matched("/cap/image_raw", TIMEOUT) and probe.wait_matched("/capz/image_raw/compressed", TIMEOUT)

    big = np.zeros((96, 128, 3), np.uint8)                        # 12,288 px
    liar = Image(height=100000, width=100000, encoding="rgb8", step=300000)   # header only, 12 bytes of data
    liar.data = array.array("B", bytes(12))
    raw_cases = [(image_msg(big, "rgb8", "cap", 1), "image is 128x96 = 12,288 pixels, more than the limit of 6,144 "
                                                    "(max_input_pixels)"),
                 (liar, "image is 100000x100000 = 10,000,000,000 pixels, more than the limit of 6,144")]
    for i, (msg, text) in enumerate(raw_cases, start=1):
        msg.header.stamp = stamp(i)
        probe._pubs["/cap/image_raw"].publish(msg)
        deadline = time.monotonic() + TIMEOUT
        while node.stats[0].errors < i and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.stats[0].errors == i and text in node.stats[0].last_error, node.stats[0].last_error

    compressed_cases = [(encode_compressed(big, "png"), "128x96 (12,288 pixels), more than the limit of 6,144"),
                        (("png", _png_claiming(100000, 100000)), "declares 10,000,000,000 pixels")]
    for i, ((fmt, data), text) in enumerate(compressed_cases, start=1):
        msg = CompressedImage(format=fmt)
        msg.data = array.array("B", data)
        msg.header.stamp = stamp(10 + i)
        probe._pubs["/capz/image_raw/compressed"].publish(msg)
        deadline = time.monotonic() + TIMEOUT
        while node.stats[1].errors < i and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.stats[1].errors == i and text in node.stats[1].last_error, node.stats[1].last_error

    good = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    assert probe.publish_until("/cap/image_raw", image_msg(good, "rgb8", "cap", 50),
                               lambda: probe.count("/cap/segmentation/mask") > 0, timeout=TIMEOUT)
    assert node._worker.is_alive()
    err = capfd.readouterr().err
    assert "[/cap/image_raw] bad image: image is 128x96 = 12,288 pixels, more than the limit" in err
    assert "[/capz/image_raw/compressed] bad image: CompressedImage" in err
    harness.remove(node)


@pytest.mark.parametrize("params,error,match", [
    ({"resolution": "4096x4096"}, ConfigError, "parameter resolution 4096x4096 = 16,777,216 pixels is more than "
                                               "max_input_pixels (8,388,608)"),
    ({"max_input_pixels": 1000}, ConfigError, "network input size 64x96 = 6,144 pixels is more than the limit of "
                                              "1,000 (max_input_pixels)"),
    ({"max_input_pixels": -1}, ConfigError, "max_input_pixels"),
    ({"weights": "metadata_19_classes"}, CheckpointError, "names 19 classes but the model predicts 11"),
    ({"weights": "config_19_weights_11"}, CheckpointError, "but model_config describes [19"),
    ({"weights": "no_metadata"}, CheckpointError, "has no 'metadata' entry"),
    ({"weights": "zero_bytes"}, CheckpointError, "is empty (0 bytes)"),
    ({"weights": "garbage_yaml"}, CheckpointError, "is not a readable checkpoint"),
])
def test_start_refuses_oversize_inputs_and_disagreeing_checkpoints(params, error, match, harness, tiny_checkpoint,
                                                                   bad_checkpoints):
    params = dict(params)
    weights = bad_checkpoints[params.pop("weights")][0] if "weights" in params else tiny_checkpoint
    overrides = [Parameter("weights", value=str(weights)), Parameter("device", value="cpu"),
                 Parameter("warmup", value=False)] + [Parameter(k, value=v) for k, v in params.items()]
    with pytest.raises(error) as info:
        SegmentationNode("seg_refuse", context=harness.context, parameter_overrides=overrides)
    assert match in str(info.value) and "\n" not in str(info.value)


def test_console_script_refuses_a_disagreeing_checkpoint_in_one_line(bad_checkpoints):
    isolate_ros_domain()
    script = Path(sys.executable).parent / "ecmnet-segment"
    exe = [str(script)] if script.exists() else [sys.executable, "-m", "ecmnet_ros.segmentation_node"]
    for case, match in (("metadata_19_classes", "names 19 classes but the model predicts 11"),
                        ("random_bytes", "is not a readable checkpoint")):
        proc = subprocess.run(exe + ["--ros-args", "-p", f"weights:={bad_checkpoints[case][0]}", "-p", "device:=cpu"],
                              capture_output=True, text=True, timeout=120, env=os.environ.copy())
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], proc.stderr
