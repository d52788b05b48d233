"""The test harness itself: callback errors surface, and removing nodes mid-run is safe."""

import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import String  # noqa: E402

from ros_harness import Probe, RosHarness, poll_until  # noqa: E402

TIMEOUT = 30.0


def test_exception_in_a_callback_is_raised_by_close():
    harness = RosHarness()
    probe = Probe(harness, "probe_raises")

    def explode(_topic, _msg):
        raise ValueError("boom in callback")
    probe.watch("/harness/explode", String, on_message=explode)
    probe.publisher("/harness/explode", String)
    assert probe.wait_matched("/harness/explode", TIMEOUT)
    probe.publisher("/harness/explode", String).publish(String(data="x"))
    assert poll_until(lambda: bool(harness.errors), TIMEOUT, period=0.02)
    with pytest.raises(RuntimeError, match="probe_raises: ValueError: boom in callback"):
        harness.close()


def test_removing_nodes_while_traffic_flows_leaves_the_others_serving():
    with RosHarness() as harness:
        sink = Probe(harness, "probe_sink")
        sink.watch("/harness/chatter", String)
        for i in range(15):        # short-lived publishers come and go while the sink spins
            src = Probe(harness, f"probe_src_{i}")
            src.publisher("/harness/chatter", String)
            assert src.publish_until("/harness/chatter", String(data=str(i)),
                                     lambda i=i: any(m.data == str(i) for m in sink.received["/harness/chatter"]),
                                     period=0.05, timeout=TIMEOUT)
            harness.remove(src.node)
        assert harness.errors == [] and harness.get_nodes() == [sink.node]
