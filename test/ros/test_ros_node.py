"""The segmentation node over real DDS (rclpy + Fast DDS), node and probe in one process.

Every test uses its own topics; the whole module runs in one random ROS_DOMAIN_ID (1..200)
with discovery limited to localhost, so parallel sessions do not see each other.
"""
import json
import os
import re
import threading
import time
import tracemalloc

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ecmnet_core.runtime.checkpoint import CheckpointError  # noqa: E402
from ecmnet_core.palettes import CAMVID_CLASSES, CAMVID_COLORS  # noqa: E402
from ecmnet_ros.conversions import encode_compressed, image_to_numpy  # noqa: E402
from ecmnet_ros.params import ConfigError  # noqa: E402
from ecmnet_ros.segmentation_node import SegmentationNode  # noqa: E402
from ros_harness import Probe, RosHarness, image_msg, require_ros2_cli, stamp  # noqa: E402

TIMEOUT = 60.0   # generous: CI has 2 shared cores


def start_node(harness, ckpt, name, **params):
    params.setdefault("device", "cpu")
    overrides = [Parameter("weights", value=str(ckpt))] + [Parameter(k, value=v) for k, v in params.items()]
    return harness.add(SegmentationNode(name, context=harness.context, parameter_overrides=overrides))


def rand_image(h, w, seed):
    # smooth-ish content so several classes appear
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    import cv2
    return np.ascontiguousarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def test_image_in_masks_out(harness, tiny_checkpoint):
    node = start_node(harness, tiny_checkpoint, "seg_basic", input_topics=["/basic/image_raw"],
                      publish_overlay=True, publish_confidence=True, confidence_encoding="mono8",
                      qos_reliability="reliable")
    probe = Probe(harness, "probe_basic")
    outs = {k: f"/basic/segmentation/{k}" for k in ("mask", "color", "overlay", "confidence", "camera_info")}
    for k, topic in outs.items():
        probe.watch(topic, CameraInfo if k == "camera_info" else Image)
    probe.publisher("/basic/camera_info", CameraInfo)
    probe.publisher("/basic/image_raw", Image)
    img = rand_image(48, 80, 1)
    info = CameraInfo(width=80, height=48, distortion_model="plumb_bob")
    info.header.frame_id = "basic_optical"
    msg = image_msg(img, "rgb8", frame_id="basic_optical", sec=12, nanosec=345)

    def all_arrived():
        return all(probe.count(t) for t in outs.values())

    def publish_both():
        probe._pubs["/basic/camera_info"].publish(info)
        probe._pubs["/basic/image_raw"].publish(msg)
        return probe.wait_for(all_arrived, 0.5)

    deadline = time.monotonic() + TIMEOUT
    while not publish_both() and time.monotonic() < deadline:
        pass
    assert all_arrived(), {t: probe.count(t) for t in outs.values()}

    mask_msg = probe.received[outs["mask"]][0]
    expected = node.engine.infer(img, confidence=True, color=True)
    for k, enc in (("mask", "mono8"), ("color", "rgb8"), ("overlay", "rgb8"), ("confidence", "mono8")):
        m = probe.received[outs[k]][0]
        assert m.encoding == enc
        assert (m.height, m.width) == (48, 80)
        assert m.header.frame_id == "basic_optical"
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (12, 345)
    np.testing.assert_array_equal(image_to_numpy(mask_msg), expected.mask)
    np.testing.assert_array_equal(image_to_numpy(probe.received[outs["color"]][0]), expected.color)
    conf = image_to_numpy(probe.received[outs["confidence"]][0]).astype(int)
    assert np.abs(conf - np.rint(expected.confidence * 255)).max() <= 1
    out_info = probe.received[outs["camera_info"]][0]
    assert (out_info.header.stamp.sec, out_info.header.stamp.nanosec) == (12, 345)
    assert out_info.width == 80 and out_info.distortion_model == "plumb_bob"
    harness.remove(node)


@pytest.mark.parametrize("compressed", [False, True], ids=["raw-encodings", "compressed"])
def test_every_input_encoding_gives_the_engine_mask(harness, tiny_checkpoint, compressed):
    topic = "/enc/image_raw/compressed" if compressed else "/enc/image_raw"
    node = start_node(harness, tiny_checkpoint, f"seg_enc_{int(compressed)}", input_topics=[topic],
                      qos_reliability="reliable", publish_color=False, camera_info_passthrough=False)
    probe = Probe(harness, f"probe_enc_{int(compressed)}")
    probe.watch("/enc/segmentation/mask", Image)
    probe.publisher(topic, CompressedImage if compressed else Image)
    img = rand_image(40, 56, 2)
    if compressed:
        cases = []
        for i, fmt in enumerate(("png", "jpeg")):
            m = CompressedImage()
            m.format, data = encode_compressed(img, fmt)
            m.data = list(data) if False else __import__("array").array("B", data)
            m.header.stamp = stamp(100 + i)
            m.header.frame_id = "enc"
            import cv2
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
            cases.append((m, np.ascontiguousarray(decoded)))
    else:
        alpha = np.full(img.shape[:2], 77, np.uint8)
        gray = img[:, :, 1].copy()
        cases = [(image_msg(arr, enc, "enc", 100 + i), ref) for i, (enc, arr, ref) in enumerate([
            ("rgb8", img, img), ("bgr8", np.ascontiguousarray(img[:, :, ::-1]), img),
            ("rgba8", np.dstack([img, alpha]), img), ("bgra8", np.dstack([img[:, :, ::-1], alpha]), img),
            ("mono8", gray, np.repeat(gray[:, :, None], 3, axis=2))])]
    for msg, ref in cases:
        sec = msg.header.stamp.sec

        def arrived(sec=sec):
            return any(m.header.stamp.sec == sec for m in probe.received["/enc/segmentation/mask"])
        assert probe.publish_until(topic, msg, arrived, timeout=TIMEOUT), f"no mask for {msg.header.stamp}"
        got = next(m for m in probe.received["/enc/segmentation/mask"] if m.header.stamp.sec == sec)
        np.testing.assert_array_equal(image_to_numpy(got), node.engine.infer(ref).mask)
    harness.remove(node)


def test_multi_camera_outputs_are_separate(harness, tiny_checkpoint):
    topics = ["/mc/left/image_raw", "/mc/right/image_raw/compressed"]
    node = start_node(harness, tiny_checkpoint, "seg_multi", input_topics=topics, qos_reliability="reliable")
    probe = Probe(harness, "probe_multi")
    probe.watch("/mc/left/segmentation/mask", Image)
    probe.watch("/mc/right/segmentation/mask", Image)
    probe.publisher(topics[0], Image)
    probe.publisher(topics[1], CompressedImage)
    left, right = rand_image(32, 48, 3), rand_image(48, 64, 4)
    lmsg = image_msg(left, "rgb8", "left", 7)
    rmsg = CompressedImage()
    rmsg.format, data = encode_compressed(right, "png")
    rmsg.data = __import__("array").array("B", data)
    rmsg.header.frame_id, rmsg.header.stamp = "right", stamp(8)

    def both():
        return probe.count("/mc/left/segmentation/mask") and probe.count("/mc/right/segmentation/mask")

    deadline = time.monotonic() + TIMEOUT
    while not both() and time.monotonic() < deadline:
        probe._pubs[topics[0]].publish(lmsg)
        probe._pubs[topics[1]].publish(rmsg)
        probe.wait_for(both, 0.5)
    assert both()
    lm, rm = probe.received["/mc/left/segmentation/mask"][0], probe.received["/mc/right/segmentation/mask"][0]
    assert (lm.header.frame_id, lm.height, lm.width) == ("left", 32, 48)
    assert (rm.header.frame_id, rm.height, rm.width) == ("right", 48, 64)
    np.testing.assert_array_equal(image_to_numpy(lm), node.engine.infer(left).mask)
    np.testing.assert_array_equal(image_to_numpy(rm), node.engine.infer(right).mask)
    harness.remove(node)


def test_bad_frames_are_logged_and_the_node_keeps_serving(harness, tiny_checkpoint, capfd):
    node = start_node(harness, tiny_checkpoint, "seg_bad", input_topics=["/bad/image_raw"],
                      qos_reliability="reliable", error_log_period=0.0, publish_color=False)
    probe = Probe(harness, "probe_bad")
    probe.watch("/bad/segmentation/mask", Image)
    probe.publisher("/bad/image_raw", Image)
    assert probe.wait_matched("/bad/image_raw", TIMEOUT)
    good = rand_image(24, 32, 5)

    def raw(encoding, h, w, step, nbytes, sec):
        m = Image(height=h, width=w, encoding=encoding, step=step)
        m.data = __import__("array").array("B", bytes(nbytes))
        m.header.stamp = stamp(sec)
        return m

    bad = [
        (raw("yuv422", 24, 32, 64, 24 * 64, 1), "unsupported image encoding 'yuv422'"),
        (raw("rgb8", 24, 32, 90, 24 * 90, 2), "step 90 is smaller than one row"),
        (raw("rgb8", 24, 32, 96, 24 * 96 - 10, 3), "truncated image data"),
        (raw("rgb8", 0, 0, 0, 0, 4), "empty image"),
        (raw("rgb8", 24, 32, 96, 24 * 96 + 96, 5), "size mismatch"),
        (raw("16UC1", 24, 32, 64, 24 * 64, 6), "cannot be segmented"),
    ]
    for i, (msg, text) in enumerate(bad, start=1):
        probe._pubs["/bad/image_raw"].publish(msg)
        deadline = time.monotonic() + TIMEOUT
        while node.stats[0].errors < i and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.stats[0].errors == i, f"bad frame {i} not reported"
        assert text in node.stats[0].last_error
    assert probe.publish_until("/bad/image_raw", image_msg(good, "rgb8", "bad", 50),
                               lambda: probe.count("/bad/segmentation/mask") > 0, timeout=TIMEOUT)
    assert [m.header.stamp.sec for m in probe.received["/bad/segmentation/mask"]][0] == 50
    assert node._worker.is_alive()
    err = capfd.readouterr().err
    for _, text in bad:
        assert text in err, f"no error log for {text!r}"
    assert re.search(r"\[/bad/image_raw\] bad image: truncated image data", err)
    harness.remove(node)


def test_diagnostics_class_info_and_wrong_topic_type(harness, tiny_checkpoint, capfd):
    node = start_node(harness, tiny_checkpoint, "seg_diag", input_topics=["/diag/image_raw", "/diag2/image_raw"],
                      diagnostics_period=0.2, stale_input_timeout=0.3, qos_reliability="reliable")
    probe = Probe(harness, "probe_diag")
    statuses, history = {}, []

    def on_diag(_, arr):
        for s in arr.status:
            statuses[s.name] = (s.level, s.message, {kv.key: kv.value for kv in s.values})
            history.append((s.name, s.level, s.message))
    probe.watch("/diagnostics", DiagnosticArray, on_message=on_diag)
    probe.watch("/diag/segmentation/mask", Image)
    probe.publisher("/diag/image_raw", Image)
    other = RosHarness()          # a second participant: DDS refuses two types on one topic in one participant
    wrong = Probe(other, "probe_wrong_type")
    wrong.publisher("/diag2/image_raw", String)      # wrong type on the second camera's topic
    name1, name2 = "/seg_diag: /diag/image_raw", "/seg_diag: /diag2/image_raw"
    img = rand_image(24, 32, 6)
    assert probe.publish_until("/diag/image_raw", image_msg(img, "rgb8", "d", 1),
                               lambda: probe.count("/diag/segmentation/mask") >= 1, timeout=TIMEOUT)

    def diag_done():
        return (name1 in statuses and int(statuses[name1][2]["frames_processed"]) >= 1
                and name2 in statuses and "carries std_msgs/msg/String" in statuses[name2][1])
    assert probe.wait_for(diag_done, TIMEOUT), statuses
    level, _, values = statuses[name1]
    for key in ("output_fps", "input_fps", "latency_p50_ms", "latency_p99_ms", "frames_dropped", "frames_received"):
        assert key in values
    assert float(values["latency_p50_ms"]) > 0 and values["device"] == "cpu"
    assert "this node expects sensor_msgs/msg/Image" in capfd.readouterr().err
    # the wrong type is a steady ERROR with the same message on every tick; it is not a bad frame
    start = len(history)
    assert probe.wait_for(lambda: sum(h[0] == name2 for h in history[start:]) >= 3, TIMEOUT)
    wrong_ticks = [h for h in history[start:] if h[0] == name2]
    assert all(level == b"\x02" and "carries std_msgs/msg/String" in msg for _, level, msg in wrong_ticks), wrong_ticks
    assert statuses[name2][2]["errors"] == "0"

    # latched class info reaches a subscriber that joins late
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.watch("/seg_diag/class_info", String, qos=latched)
    assert probe.wait_for(lambda: probe.count("/seg_diag/class_info") >= 1, TIMEOUT)
    info = json.loads(probe.received["/seg_diag/class_info"][0].data)
    assert info["classes"] == CAMVID_CLASSES and info["colors"] == CAMVID_COLORS and info["ignore_index"] == 11
    assert info["cameras"][0]["mask"] == "/diag/segmentation/mask"
    other.close()
    harness.remove(node)


def _label_info_type():
    require_ros2_cli()           # skips only where ../shared/ros2-extra is absent
    from vision_msgs.msg import LabelInfo
    return LabelInfo


def test_label_info_carries_the_checkpoints_classes_to_late_subscribers(harness, tmp_path):
    """vision_msgs/LabelInfo per camera on <prefix>/label_info, latched: a subscriber that joins
    after the node started still gets ids and names from the checkpoint's metadata."""
    LabelInfo = _label_info_type()
    from ecmnet_core.runtime.checkpoint import make_metadata, save_checkpoint
    from ecmnet_core.model import ECMNet

    names = ["road", "sidewalk", "grass", "person", "car"]
    ckpt = save_checkpoint(tmp_path / "five.pt", ECMNet(num_classes=5).eval(),
                           make_metadata(5, names, ignore_index=255, input_size=(32, 48), dataset="five"))
    node = start_node(harness, ckpt, "seg_labels", input_topics=["/li/image_raw", "/li2/cam/image_raw"])
    probe = Probe(harness, "probe_labels")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    topics = ["/li/segmentation/label_info", "/li2/cam/segmentation/label_info"]
    for t in topics:                                   # subscribe only now: the node published long ago
        probe.watch(t, LabelInfo, qos=latched)
    assert probe.wait_for(lambda: all(probe.count(t) for t in topics), TIMEOUT)
    for t in topics:
        msg = probe.received[t][0]
        assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(names))
        assert msg.threshold == 0.0
    assert probe.count(topics[0]) == 1                 # once, not per frame
    info = node.class_info()
    assert info["cameras"][0]["label_info"] == topics[0]
    harness.remove(node)
    harness.remove(probe.node)


def test_confidence_threshold_marks_unlabeled_pixels_and_is_the_label_info_threshold(harness, tiny_checkpoint):
    """Pixels whose softmax max is below confidence_threshold are published as 255 (UNLABELED in
    LabelInfo, black in the colour mask); the confidence image is mono8 by default (Nav2's layer)."""
    LabelInfo = _label_info_type()
    from ecmnet_ros.engine_setup import build_engine

    img = rand_image(40, 56, 11)
    expected = build_engine(str(tiny_checkpoint), "cpu", "auto", "fp32", "model").infer(img, confidence=True,
                                                                                         color=True)
    threshold = float(np.median(expected.confidence))   # half of the pixels on each side
    node = start_node(harness, tiny_checkpoint, "seg_thr", input_topics=["/thr/image_raw"], publish_confidence=True,
                      confidence_threshold=threshold, qos_reliability="reliable")
    probe = Probe(harness, "probe_thr")
    for k in ("mask", "color", "confidence"):
        probe.watch(f"/thr/segmentation/{k}", Image)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.watch("/thr/segmentation/label_info", LabelInfo, qos=latched)
    probe.publisher("/thr/image_raw", Image)
    outs = [f"/thr/segmentation/{k}" for k in ("mask", "color", "confidence")]
    assert probe.publish_until("/thr/image_raw", image_msg(img, "rgb8", "thr", 3),
                               lambda: all(probe.count(t) for t in outs), timeout=TIMEOUT)
    low = expected.confidence < threshold
    assert 0 < low.sum() < low.size
    mask = image_to_numpy(probe.received[outs[0]][0])
    np.testing.assert_array_equal(mask, np.where(low, 255, expected.mask))
    color = image_to_numpy(probe.received[outs[1]][0])
    np.testing.assert_array_equal(color, np.where(low[..., None], 0, expected.color))
    conf = probe.received[outs[2]][0]
    assert conf.encoding == "mono8"
    np.testing.assert_allclose(image_to_numpy(conf).astype(int), np.rint(expected.confidence * 255), atol=1)
    assert probe.wait_for(lambda: probe.count("/thr/segmentation/label_info") > 0, TIMEOUT)
    info = probe.received["/thr/segmentation/label_info"][0]
    assert abs(info.threshold - threshold) < 1e-6
    assert [(c.class_id, c.class_name) for c in info.class_map] == list(enumerate(CAMVID_CLASSES)) + [(255, "UNLABELED")]
    harness.remove(node)
    harness.remove(probe.node)


def _rss_bytes():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) * 1024


def test_burst_with_slow_inference_drops_instead_of_queueing(harness, tiny_checkpoint):
    node = start_node(harness, tiny_checkpoint, "seg_burst", input_topics=["/burst/image_raw"],
                      qos_reliability="reliable", qos_depth=50, publish_color=False,
                      camera_info_passthrough=False)
    original = node.engine.infer_batch
    calls = []

    def slow_infer(images, **kw):
        calls.append(len(images))
        time.sleep(0.05)                                   # injected: a model much slower than the camera
        return original(images, **kw)
    node.engine.infer_batch = slow_infer

    probe = Probe(harness, "probe_burst", depth=50)
    probe.watch("/burst/segmentation/mask", Image)
    pub = probe.publisher("/burst/image_raw", Image)
    assert probe.wait_matched("/burst/image_raw", TIMEOUT)
    frame = rand_image(120, 160, 7)                       # 57.6 kB per message
    msgs = [image_msg(frame, "rgb8", "burst", 1000 + i) for i in range(3)]   # reused buffers

    def burst(n, first):
        # Keep at most ~40 frames in flight inside DDS (history depth 50) so the frames reach the
        # node's callback and the node itself, not the DDS history, has to drop them.
        start = node.mailbox.received[0]
        for i in range(n):
            m = msgs[i % 3]
            m.header.stamp = stamp(first + i)
            pub.publish(m)
            deadline = time.monotonic() + 2.0
            while node.mailbox.received[0] < start + i - 40 and time.monotonic() < deadline:
                time.sleep(0.0005)

    burst(50, 0)                                          # warm-up: allocate steady-state buffers
    assert probe.wait_for(lambda: probe.count("/burst/segmentation/mask") >= 1, TIMEOUT)
    tracemalloc.start()
    base_py, base_rss = tracemalloc.get_traced_memory()[0], _rss_bytes()
    peak_pending = [0]
    stop = threading.Event()

    def watch_pending():
        while not stop.is_set():
            peak_pending[0] = max(peak_pending[0], node.mailbox.pending())
            time.sleep(0.001)
    watcher = threading.Thread(target=watch_pending, daemon=True)
    watcher.start()
    burst(1000, 10_000)
    last = 10_000 + 999
    # latest frame wins: the last published frame is eventually segmented
    assert probe.wait_for(lambda: any(m.header.stamp.sec == last for m in probe.received["/burst/segmentation/mask"]),
                          TIMEOUT), "the newest frame was never segmented"
    py_growth = tracemalloc.get_traced_memory()[0] - base_py
    rss_growth = _rss_bytes() - base_rss
    tracemalloc.stop()
    stop.set()
    watcher.join()
    received, dropped = node.mailbox.received[0], node.mailbox.dropped[0]
    processed = node.stats[0].processed
    assert received >= 900, f"only {received} of 1050 frames reached the node"
    assert received == processed + dropped + node.mailbox.pending()
    assert dropped >= received - 100 and processed < received / 4, (received, processed, dropped)
    assert peak_pending[0] <= 1
    print(f"burst: received {received} processed {processed} dropped {dropped}; "
          f"python heap +{py_growth / 1e6:.2f} MB, RSS +{rss_growth / 1e6:.2f} MB")
    # 1000 frames of 57.6 kB queued would be ~58 MB; latest-frame-wins keeps it flat
    assert py_growth < 5e6, f"Python heap grew by {py_growth / 1e6:.1f} MB during the burst"
    assert rss_growth < 30e6, f"RSS grew by {rss_growth / 1e6:.1f} MB during the burst"
    harness.remove(node)


@pytest.mark.parametrize("params,error,match", [
    ({"qos_depth": 0}, ConfigError, "qos_depth"),
    ({"qos_depth": "five"}, ConfigError, "qos_depth"),
    ({"overlay_alpha": 1.5}, ConfigError, "overlay_alpha"),
    ({"resolution": "big"}, ConfigError, "resolution must be 'model', 'native' or HxW"),
    ({"resolution": "8x8"}, ConfigError, "at least 16x16"),
    ({"confidence_encoding": "bgr8"}, ConfigError, "confidence_encoding must be one of 32FC1, mono8"),
    ({"confidence_threshold": 1.5}, ConfigError, "confidence_threshold"),
    ({"qos_reliability": "sometimes"}, ConfigError, "qos_reliability must be one of"),
    ({"device": "gpu"}, ConfigError, "device must be auto, cpu, cuda or cuda:N"),
    ({"input_topics": ["/a/image", "/a/image"]}, ConfigError, "duplicates"),
    ({"input_topics": ["/a/image", "/a/image2"]}, ConfigError, "same output namespace"),
    ({"input_topics": ["/a/image", "/b/image"], "output_prefixes": ["x"]}, ConfigError, "one entry per input topic"),
    ({"input_topics": ["bad topic name"]}, ConfigError, "invalid topic name"),
    ({"weights": "/nonexistent/model.pt"}, CheckpointError, "checkpoint not found"),
])
def test_invalid_parameters_fail_at_start_with_clear_errors(harness, tiny_checkpoint, params, error, match):
    params = dict(params)
    weights = params.pop("weights", tiny_checkpoint)
    overrides = [Parameter("weights", value=str(weights)), Parameter("device", value="cpu"),
                 Parameter("warmup", value=False)] + [Parameter(k, value=v) for k, v in params.items()]
    with pytest.raises(error, match=match):
        SegmentationNode("seg_invalid", context=harness.context, parameter_overrides=overrides)


def test_cuda_request_falls_back_to_cpu_when_absent(harness, tiny_checkpoint):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA present: no fallback to test")
    node = SegmentationNode("seg_fallback", context=harness.context, parameter_overrides=[
        Parameter("weights", value=str(tiny_checkpoint)), Parameter("device", value="cuda"),
        Parameter("precision", value="fp16"), Parameter("warmup", value=False)])
    assert str(node.engine.device) == "cpu"
    node.destroy_node()
    with pytest.raises(ConfigError, match="CUDA is not available"):
        SegmentationNode("seg_nofallback", context=harness.context, parameter_overrides=[
            Parameter("weights", value=str(tiny_checkpoint)), Parameter("device", value="cuda"),
            Parameter("allow_cpu_fallback", value=False)])


def test_compile_on_cpu_warns_and_runs_uncompiled(harness, tiny_checkpoint, capfd):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA present: compile would be honoured")
    node = SegmentationNode("seg_compile_cpu", context=harness.context, parameter_overrides=[
        Parameter("weights", value=str(tiny_checkpoint)), Parameter("device", value="cpu"),
        Parameter("compile", value=True), Parameter("warmup", value=False)])
    assert node.engine.compiled is False and node.get_parameter("compile").value is True
    assert "compile needs CUDA: running uncompiled on CPU" in capfd.readouterr().err
    node.destroy_node()


def test_runtime_parameter_changes_and_typo_warning(harness, tiny_checkpoint, capfd):
    node = SegmentationNode("seg_params", context=harness.context, parameter_overrides=[
        Parameter("weights", value=str(tiny_checkpoint)), Parameter("device", value="cpu"),
        Parameter("warmup", value=False), Parameter("qos_dept", value=3)])
    assert "ignoring unknown parameter(s) ['qos_dept']" in capfd.readouterr().err
    ok, = node.set_parameters([Parameter("overlay_alpha", value=0.25)])
    assert ok.successful and node._overlay_alpha == 0.25
    out_of_range, = node.set_parameters([Parameter("overlay_alpha", value=1.5)])
    read_only, = node.set_parameters([Parameter("qos_depth", value=3)])
    assert not out_of_range.successful and node._overlay_alpha == 0.25
    assert not read_only.successful and node.get_parameter("qos_depth").value == 20
    descriptor = node.describe_parameter("qos_depth")
    assert descriptor.integer_range[0].from_value == 1 and descriptor.read_only and descriptor.description
    node.destroy_node()
