"""Input QoS matching (qos_reliability: auto) and the transport diagnostics: what /diagnostics and the
log say when a publisher is matched but silent, loses frames, or offers incompatible QoS.

The pure parts (choosing the reliability, wording the diagnosis) are checked directly; the node's
behaviour over real DDS with small frames, publishers and node in one process (QoS matching and
its events work the same within a participant; large frames between processes are in
test_ros_transport.py).
"""
import time
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from ecmnet_ros.qos import choose_reliability  # noqa: E402
from ecmnet_ros.segmentation_node import SegmentationNode  # noqa: E402
from ros_harness import Probe, image_msg  # noqa: E402
from ecmnet_ros.transport_health import ERROR, OK, WARN, InputFacts, diagnose  # noqa: E402
from transport_rig import DiagnosticsReader  # noqa: E402

TIMEOUT = 60.0


def endpoint(reliability):
    return SimpleNamespace(qos_profile=SimpleNamespace(reliability=reliability))


@pytest.mark.parametrize("offered,expected", [
    ([], "best_effort"),                                     # nobody yet: best effort matches any publisher
    ([ReliabilityPolicy.RELIABLE], "reliable"),
    ([ReliabilityPolicy.RELIABLE, ReliabilityPolicy.RELIABLE], "reliable"),
    ([ReliabilityPolicy.BEST_EFFORT], "best_effort"),
    ([ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT], "best_effort"),   # mixed: match both
])
def test_auto_reliability_matches_what_every_publisher_offers(offered, expected):
    assert choose_reliability("auto", [endpoint(r) for r in offered]) == expected
    assert choose_reliability("reliable", [endpoint(r) for r in offered]) == "reliable"


def facts(**kw):
    base = dict(topic="/cam/image_raw", expected_type="sensor_msgs/msg/Image", requested="auto",
                reliability="best_effort", timeout=5.0)
    base.update(kw)
    return InputFacts(**base)


def test_diagnosis_names_the_likely_cause():
    # frames flowing, nothing lost
    assert diagnose(facts(publishers=[("/cam", "best_effort")], matched=1, silent_for=0.1, never_received=False,
                          received=30))[0] == OK
    # never any publisher
    level, msg, kind = diagnose(facts(silent_for=6.0))
    assert (level, kind) == (WARN, "") and "no publisher on /cam/image_raw" in msg
    # matched best-effort publisher, every frame lost in transport: ERROR naming the profile
    level, msg, kind = diagnose(facts(publishers=[("/cam", "best_effort")], matched=1, silent_for=6.0, lost=12))
    assert (level, kind) == (ERROR, "transport loss")
    assert "12 frame(s) lost in transport" in msg and "512 kB shared-memory segment" in msg
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in msg
    # some frames arrive, >= 1 % lost
    level, msg, kind = diagnose(facts(publishers=[("/cam", "best_effort")], matched=1, silent_for=0.1,
                                      never_received=False, received=27, lost=3))
    assert (level, kind) == (WARN, "transport loss") and "3 of 30 frame(s) lost" in msg
    # a reliable publisher forced onto a best-effort subscription: says to use auto
    level, msg, _ = diagnose(facts(requested="best_effort", publishers=[("/cam", "reliable")], matched=1,
                                   silent_for=6.0, lost=5))
    assert level == ERROR and "set qos_reliability to auto" in msg
    # matched but silent: reliable publisher -> the camera stopped; best effort -> maybe transport
    level, msg, kind = diagnose(facts(reliability="reliable", publishers=[("/cam", "reliable")], matched=1,
                                      silent_for=7.0, never_received=False))
    assert (level, kind) == (WARN, "matched but silent") and "camera most likely stopped publishing" in msg
    level, msg, _ = diagnose(facts(publishers=[("/cam", "best_effort")], matched=1, silent_for=7.0))
    assert level == WARN and "dropped in transport" in msg and "fastdds.xml" in msg
    # forced reliable vs a best-effort camera: a QoS mismatch at once, not only after the timeout
    level, msg, kind = diagnose(facts(requested="reliable", reliability="reliable",
                                      publishers=[("/cam", "best_effort")], matched=0, silent_for=0.5,
                                      incompatible_events=1, incompatible_policy="RELIABILITY"))
    assert (level, kind) == (ERROR, "qos mismatch")
    assert "RELIABILITY incompatible" in msg and "set qos_reliability to auto" in msg
    # with auto, a mismatch is transient (the node re-subscribes): reported only if it lasts
    assert diagnose(facts(reliability="reliable", publishers=[("/cam", "best_effort")], silent_for=0.5,
                          incompatible_events=1))[0] == OK
    # wrong message type keeps its own message
    level, msg, kind = diagnose(facts(wrong_types=["std_msgs/msg/String"], silent_for=6.0))
    assert (level, kind) == (ERROR, "topic type") and "carries std_msgs/msg/String" in msg


@pytest.fixture(scope="module")
def diag(harness):
    return DiagnosticsReader(harness, "qos_diag_reader")


def start_node(harness, ckpt, name, topic, **params):
    params = {"device": "cpu", "weights": str(ckpt), "input_topics": [topic], "diagnostics_period": 0.2,
              "camera_info_passthrough": False, "publish_color": False, **params}
    return harness.add(SegmentationNode(name, context=harness.context,
                                        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))


def small_frame(sec):
    img = np.random.default_rng(sec).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return image_msg(img, "rgb8", "cam", sec)


def wait_value(diag, topic, key, value, timeout=TIMEOUT):
    return diag.wait(lambda: diag.values(topic).get(key) == value, timeout)


def test_auto_qos_follows_the_publishers_without_losing_or_repeating_frames(harness, diag, tiny_checkpoint):
    topic = "/aq/image_raw"
    node = start_node(harness, tiny_checkpoint, "seg_auto", topic)
    reliable = Probe(harness, "cam_reliable", reliable=True)
    reliable.publisher(topic, Image)
    assert wait_value(diag, topic, "input_reliability", "reliable"), diag.values(topic)
    assert reliable.wait_matched(topic)
    sent = 0
    for _ in range(20):
        sent += 1
        reliable._pubs[topic].publish(small_frame(sent))
        time.sleep(0.02)
    # a best-effort camera joins: a reliable subscription could never match it -> best effort for both
    best_effort = Probe(harness, "cam_best_effort", reliable=False)
    best_effort.publisher(topic, Image)
    deadline = time.monotonic() + TIMEOUT
    while diag.values(topic).get("input_reliability") != "best_effort" and time.monotonic() < deadline:
        sent += 1
        reliable._pubs[topic].publish(small_frame(sent))      # keeps flowing through the switch
        time.sleep(0.02)
    assert diag.values(topic).get("input_reliability") == "best_effort", diag.values(topic)
    for _ in range(20):
        sent += 1
        reliable._pubs[topic].publish(small_frame(sent))
        best_effort._pubs[topic].publish(small_frame(10_000 + sent))
        sent += 1
        time.sleep(0.02)
    cam_in = node.input_subs[0]
    assert diag.wait(lambda: cam_in.received >= sent - 2, TIMEOUT), (cam_in.received, sent)
    time.sleep(0.5)
    # every frame at most once (overlapping subscriptions during a switch do not double-deliver)
    assert cam_in.received <= sent and cam_in.switches == 2, (cam_in.received, sent, cam_in.switches)
    # the best-effort camera leaves: back to reliable
    harness.remove(best_effort.node)
    assert wait_value(diag, topic, "input_reliability", "reliable"), diag.values(topic)
    assert diag.values(topic)["qos_incompatible_events"] != "0"
    harness.remove(reliable.node)
    harness.remove(node)


def test_forced_reliable_input_and_best_effort_camera_is_reported_as_qos_mismatch(harness, diag, tiny_checkpoint,
                                                                                  capfd):
    topic = "/mismatch/image_raw"
    node = start_node(harness, tiny_checkpoint, "seg_mismatch", topic, qos_reliability="reliable",
                      error_log_period=0.0)
    cam = Probe(harness, "cam_mismatch", reliable=False)
    cam.publisher(topic, Image)

    def mismatch():
        latest = diag.latest.get(topic)
        return latest is not None and "QoS mismatch" in latest[1]
    deadline = time.monotonic() + TIMEOUT
    while not diag.wait(mismatch, 0.3) and time.monotonic() < deadline:
        cam._pubs[topic].publish(small_frame(1))
    level, message, values, _ = diag.latest[topic]
    assert level == ERROR and "RELIABILITY incompatible" in message and "set qos_reliability to auto" in message
    assert values["frames_received"] == "0" and values["input_reliability"] == "reliable"
    assert int(values["qos_incompatible_events"]) >= 1
    harness.remove(node)
    harness.remove(cam.node)
    assert "[/mismatch/image_raw] qos mismatch: QoS mismatch on /mismatch/image_raw" in capfd.readouterr().err


def test_matched_camera_that_stops_is_reported_with_the_likely_cause(harness, diag, tiny_checkpoint, capfd):
    topic = "/stops/image_raw"
    node = start_node(harness, tiny_checkpoint, "seg_stops", topic, stale_input_timeout=0.6)
    cam = Probe(harness, "cam_stops", reliable=True)
    cam.publisher(topic, Image)
    assert wait_value(diag, topic, "input_reliability", "reliable")
    assert cam.publish_until(topic, small_frame(1), lambda: node.input_subs[0].received > 0, timeout=TIMEOUT)

    def reported():
        return any("camera most likely stopped publishing" in m for _, m, _, _ in diag.history.get(topic, []))
    assert diag.wait(reported, TIMEOUT), diag.history.get(topic, [])[-3:]
    level, message, _, _ = next(e for e in diag.history[topic] if "stopped publishing" in e[1])
    assert level == WARN and "1 publisher(s) matched (/cam_stops (reliable)" in message
    harness.remove(node)
    harness.remove(cam.node)
    assert "[/stops/image_raw] matched but silent:" in capfd.readouterr().err


def test_shipped_fastdds_profile_is_valid_and_installed():
    """config/fastdds.xml parses, is the default participant profile, enlarges the shared-memory
    segment, keeps UDPv4 (discovery, other hosts), and setup.py installs it next to segment.yaml."""
    import xml.etree.ElementTree as ET
    from pathlib import Path

    from ecmnet_ros.qos import shipped_profile

    path = shipped_profile()
    assert path is not None and path.name == "fastdds.xml"
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(path).getroot()
    descriptors = {d.findtext("d:transport_id", namespaces=ns): d
                   for d in root.iterfind(".//d:transport_descriptor", ns)}
    kinds = {d.findtext("d:type", namespaces=ns) for d in descriptors.values()}
    assert kinds == {"SHM", "UDPv4"}
    shm = next(d for d in descriptors.values() if d.findtext("d:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("d:segment_size", namespaces=ns)) >= 32 * 1024 * 1024
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = {t.text for t in participant.iterfind(".//d:userTransports/d:transport_id", ns)}
    assert used == set(descriptors)
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"
    # installed next to segment.yaml: test/ros/test_launch.py checks the colcon install's share/ folder
