"""Camera-sized frames from another process reach the node with the shipped defaults.

The node runs as `ecmnet-segment --params-file config/segment.yaml` in its own process (with
config/fastdds.xml, as the launch file starts it, and once without any profile); a fake camera
publishes at 30 Hz from a third process, reliable (rclpy's default QoS) or best effort. Transport
loss = frames the camera published that the node's subscription callback never saw.

What the measurements (benchmarks/transport.py, docs/ros.md "Transport") showed, and so what is
asserted here:
- camera process with config/fastdds.xml, reliable or best effort, rgb8 up to 2048x1024 and jpeg:
  < 1 % loss, whether or not the node has the profile;
- reliable 1080p jpeg (0.9 MB) from a camera with no Fast DDS configuration: < 1 % loss;
- reliable 1080p rgb8 from a camera with no configuration: the node subscribes reliable, but the
  repairs through the camera's 512 kB segment lose 3-46 % on this 2-core machine under load, so the
  test checks that frames flow and that any loss is reported with that cause, not a loss bound;
- best-effort 1080p rgb8 from a camera with no configuration cannot work (~97 % lost): the node
  must say why.
30 Hz of 6 MB frames is a throughput claim: on a machine whose other work starves both processes
(load average above 2 per core) a loss is reported as a skip with its numbers, not a failure.
"""
import os

import pytest

pytest.importorskip("rclpy")

from ros_harness import isolate_ros_domain  # noqa: E402
from transport_rig import DiagnosticsReader, NodeProcess, measure, run_camera  # noqa: E402

FRAMES = 120          # 4 s at 30 Hz; < 1 % loss means at most 1 lost frame
# 1-minute load average per core above which a 30 Hz loss measurement says more about the machine
# than about the node (measured here: other test suites on 2 shared cores, load 6-7, starve both processes)
OVERLOADED_PER_CORE = 2.0

# (id, topic, size, format, camera reliability, camera loads config/fastdds.xml)
CASES = [
    ("1080p-rgb8-reliable", "/tr/rel1080/image_raw", "1080x1920", "raw", "reliable", True),
    ("1080p-rgb8-best_effort", "/tr/be1080/image_raw", "1080x1920", "raw", "best_effort", True),
    ("2048x1024-rgb8-reliable", "/tr/rel2k/image_raw", "1024x2048", "raw", "reliable", True),
    ("1080p-jpeg-best_effort", "/tr/bejpeg/image_raw/compressed", "1080x1920", "jpeg", "best_effort", True),
    ("1080p-jpeg-reliable-camera_without_profile", "/tr/reljpeg/image_raw/compressed", "1080x1920", "jpeg",
     "reliable", False),
]
RELIABLE_PLAIN = "/tr/relplain/image_raw"   # reliable 1080p rgb8 from a camera WITHOUT the profile
LOSSY = "/tr/lossy/image_raw"          # best-effort 1080p from a camera WITHOUT the profile
NO_PROFILE_TOPIC = "/tr/plain/image_raw"


@pytest.fixture(scope="module")
def diag(harness):
    return DiagnosticsReader(harness)


def _node(tmp_path_factory, diag, checkpoint, topics, profile, name):
    node = NodeProcess(checkpoint, topics, profile=profile, log_path=tmp_path_factory.mktemp(name) / "node.log",
                       params={"diagnostics_period": "0.5"})
    try:
        node.wait_ready(diag)
    except Exception:
        node.stop()
        raise
    return node


@pytest.fixture(scope="module")
def node_with_profile(tmp_path_factory, diag, tiny_checkpoint):
    """The node as segment.launch.py starts it: shipped YAML + config/fastdds.xml."""
    node = _node(tmp_path_factory, diag, tiny_checkpoint, [c[1] for c in CASES] + [RELIABLE_PLAIN, LOSSY], True,
                 "profile")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def node_without_profile(tmp_path_factory, diag, tiny_checkpoint):
    """The node started by hand with no Fast DDS configuration at all."""
    node = _node(tmp_path_factory, diag, tiny_checkpoint, [NO_PROFILE_TOPIC], False, "plain")
    yield node
    node.stop()


def _assert_under_one_percent(result, node, what):
    if result["lost"] * 100 < result["published"]:
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > OVERLOADED_PER_CORE * cores:
        pytest.skip(f"{what}: {result['lost']} of {result['published']} frames lost while the machine was "
                    f"overloaded (load {load:.1f} on {cores} cores); not a measurement of the node")
    pytest.fail(f"{what}: {result['lost']} of {result['published']} frames lost in transport ({result}); "
                f"node log:\n{node.log()[-3000:]}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_camera_frames_reach_the_node_with_shipped_defaults(diag, node_with_profile, case):
    name, topic, size, fmt, reliability, camera_profile = case
    camera = run_camera(topic, size, fmt, reliability, profile=camera_profile, frames=FRAMES)
    result = measure(diag, topic, camera)
    _assert_under_one_percent(result, node_with_profile, name)
    # auto QoS matched the publisher: reliable input for a reliable camera (lost fragments repaired)
    assert result["input_reliability"] == reliability, result
    assert result["node_frames_lost_transport"] <= result["lost"] + 1, result
    if fmt == "raw":
        h, w = (int(v) for v in size.split("x"))
        assert camera["message_bytes_mean"] == h * w * 3
    else:
        assert camera["message_bytes_mean"] > 512 * 1024, "the jpeg should exceed Fast DDS's 512 kB default"


def test_node_without_any_profile_receives_a_configured_camera(diag, node_without_profile):
    """Receiving needs the profile in the camera (the sender's shared-memory segment), not in the node."""
    camera = run_camera(NO_PROFILE_TOPIC, "1080x1920", "raw", "best_effort", profile=True, frames=FRAMES)
    result = measure(diag, NO_PROFILE_TOPIC, camera)
    _assert_under_one_percent(result, node_without_profile, "best-effort camera with profile, node without")
    assert diag.values(NO_PROFILE_TOPIC)["fastdds_profile"].startswith("none")


def test_reliable_camera_without_profile_gets_reliable_input_and_any_loss_is_explained(diag, node_with_profile):
    camera = run_camera(RELIABLE_PLAIN, "1080x1920", "raw", "reliable", profile=False, frames=FRAMES)
    result = measure(diag, RELIABLE_PLAIN, camera)
    print(f"reliable 1080p rgb8, camera without profile: {result}")
    assert result["input_reliability"] == "reliable", result      # auto: repairs instead of ~100 % loss
    assert result["received"] > 0, result
    if result["lost"] * 100 >= result["published"]:
        reports = [m for _, m, _, _ in diag.history[RELIABLE_PLAIN] if "lost in transport" in m]
        assert reports, (result, diag.history[RELIABLE_PLAIN][-5:])
        assert "reliable input" in reports[0] and "config/fastdds.xml" in reports[0], reports[0]


def test_best_effort_camera_without_profile_is_diagnosed_as_transport_loss(diag, node_with_profile):
    """The one setup that cannot work (the camera's own 512 kB segment drops the fragments): the node
    says which frames are lost and why, on /diagnostics and in its log."""
    camera = run_camera(LOSSY, "1080x1920", "raw", "best_effort", profile=False, frames=60)
    assert camera["published"] == 60

    def explained():
        return any("lost in transport" in msg for _, msg, _, _ in diag.history.get(LOSSY, []))
    assert diag.wait(explained, 30), diag.history.get(LOSSY)
    level, message, values, _ = next(e for e in diag.history[LOSSY] if "lost in transport" in e[1])
    assert level >= 1, message
    assert "512 kB shared-memory segment" in message and "FASTDDS_DEFAULT_PROFILES_FILE" in message, message
    assert values["input_reliability"] == "best_effort"
    assert int(values["dds_samples_lost"]) + int(values["frames_lost_transport"]) > 0, values
    log = node_with_profile.log()
    assert f"[{LOSSY}] transport loss:" in log and "config/fastdds.xml" in log, log[-3000:]
