"""The lifecycle (managed) node: configure = load + warm up, activate = topics + worker, deactivate =
no topics but the engine kept, cleanup = engine freed, shutdown = process exits; start-up parameters
change only while unconfigured. Driven in process through the transition methods, and as a real
process through `ros2 lifecycle` (the services) with frames flowing over real DDS."""
import gc
import json
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ecmnet_ros.lifecycle_node import SegmentationLifecycleNode  # noqa: E402
from ros_harness import (CLEAN_EXIT_FORBIDDEN, Probe, Process, child_pids, image_msg, poll_until,  # noqa: E402
                                pid_alive, require_ros2_cli, ros2_env)

TIMEOUT = 120.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _state(node) -> str:
    return node._state_machine.current_state[1]


def test_transitions_load_keep_and_free_the_engine(harness, tiny_checkpoint):
    probe = Probe(harness, "probe_lc_inproc")
    mask = "/lcin/segmentation/mask"
    node = SegmentationLifecycleNode("seg_lc_inproc", context=harness.context, parameter_overrides=[
        Parameter("weights", value=str(tiny_checkpoint)), Parameter("device", value="cpu"),
        Parameter("input_topics", value=["/lcin/image_raw"])])
    try:
        assert node.engine is None and _state(node) == "unconfigured"        # constructing loads nothing
        assert node.set_parameters([Parameter("resolution", value="32x48")])[0].successful
        assert node.trigger_configure() == SUCCESS and _state(node) == "inactive"
        assert node.engine.input_size == (32, 48)
        refused = node.set_parameters([Parameter("resolution", value="64x96")])[0]
        assert not refused.successful and "unconfigured" in refused.reason
        assert node.set_parameters([Parameter("overlay_alpha", value=0.3)])[0].successful   # a run-time one
        assert probe.node.count_publishers(mask) == 0                         # inactive: no topics
        engine = node.engine
        engine_ref, model_ref = weakref.ref(engine), weakref.ref(engine.model)
        for _ in range(2):
            assert node.trigger_activate() == SUCCESS and _state(node) == "active"
            assert poll_until(lambda: probe.node.count_publishers(mask) == 1)
            assert node._worker.is_alive()
            assert node.trigger_deactivate() == SUCCESS and _state(node) == "inactive"
            assert poll_until(lambda: probe.node.count_publishers(mask) == 0)
            assert node._worker is None and node.engine is engine            # the engine stays loaded
        del engine
        assert node.trigger_cleanup() == SUCCESS and _state(node) == "unconfigured"
        gc.collect()
        assert node.engine is None and engine_ref() is None and model_ref() is None, "the model was not freed"
        # a failing configure leaves the node unconfigured and fixable
        node.set_parameters([Parameter("weights", value="/nonexistent/model.pt")])
        assert node.trigger_configure() == FAILURE and _state(node) == "unconfigured" and node.engine is None
        node.set_parameters([Parameter("weights", value=str(tiny_checkpoint))])
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        assert node.trigger_shutdown() == SUCCESS and _state(node) == "finalized"
        assert node.finished and node.engine is None
        assert poll_until(lambda: probe.node.count_publishers(mask) == 0)
    finally:
        node.destroy_node()
        harness.remove(probe.node)


def lifecycle_cli(env, *args, expect=None):
    """`ros2 lifecycle ...` without the daemon; retried while discovery has not seen the node yet."""
    out = ""
    for _ in range(10):
        res = subprocess.run(["ros2", "lifecycle", *args, "--no-daemon", "--spin-time", "3"], env=env,
                             capture_output=True, text=True, timeout=120)
        out = res.stdout + res.stderr
        if "Node not found" not in out:
            break
    if expect is not None:
        assert expect in out, (args, out)
    return out


def param_set(env, name, value):
    res = subprocess.run(["ros2", "param", "set", "/ecmnet_segmentation", name, value, "--no-daemon",
                          "--spin-time", "3"], env=env, capture_output=True, text=True, timeout=120)
    return res.stdout + res.stderr


def test_ros2_lifecycle_cli_drives_a_real_process(harness, tmp_path_factory, tiny_checkpoint):
    require_ros2_cli()
    prefix = tmp_path_factory.mktemp("lc_prefix")
    register = Path(sys.executable).parent / "ecmnet-ros-register"
    assert subprocess.run([str(register), "--prefix", str(prefix)], capture_output=True, timeout=120).returncode == 0
    env = ros2_env([prefix])
    from vision_msgs.msg import LabelInfo

    mask, info_topic, class_info = "/lc/segmentation/mask", "/lc/segmentation/label_info", \
        "/ecmnet_segmentation/class_info"
    probe = Probe(harness, "probe_lc_cli")
    probe.watch(mask, Image)
    probe.watch(info_topic, LabelInfo, qos=LATCHED)
    probe.watch(class_info, String, qos=LATCHED)
    pub = probe.publisher("/lc/image_raw", Image)
    frame = image_msg(np.zeros((24, 32, 3), np.uint8), "rgb8", "lc", 1)

    def masks_flow(timeout=TIMEOUT):
        before = probe.count(mask)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            frame.header.stamp.sec += 1
            pub.publish(frame)
            if probe.wait_for(lambda: probe.count(mask) > before, 0.2):
                return True
        return False

    proc = Process(["ros2", "launch", "ecmnet_ros", "segment.launch.py", "managed:=true", "autostart:=false",
                    f"weights:={tiny_checkpoint}", "device:=cpu", "input_topics:=/lc/image_raw"], env=env)
    node = "/ecmnet_segmentation"
    try:
        assert proc.wait_for_line("process started", TIMEOUT) is not None, proc.output
        lifecycle_cli(env, "get", node, expect="unconfigured [1]")
        assert "]: loaded " not in proc.output                            # autostart:=false: nothing loaded
        lifecycle_cli(env, "set", node, "configure", expect="Transitioning successful")
        lifecycle_cli(env, "get", node, expect="inactive [2]")
        assert proc.output.count("]: loaded ") == 1
        assert not masks_flow(2.0) and probe.node.count_publishers(mask) == 0
        assert "Setting parameter failed" in param_set(env, "resolution", "32x48")   # configured: refused

        lifecycle_cli(env, "set", node, "activate", expect="Transitioning successful")
        assert masks_flow(), proc.output[-3000:]
        assert probe.wait_for(lambda: probe.count(info_topic) > 0, 30)
        assert json.loads(probe.received[class_info][-1].data)["resolution"] == "64x96"

        lifecycle_cli(env, "set", node, "deactivate", expect="Transitioning successful")
        assert poll_until(lambda: probe.node.count_publishers(mask) == 0)
        assert not masks_flow(2.0)
        lifecycle_cli(env, "set", node, "activate", expect="Transitioning successful")
        assert masks_flow(), proc.output[-3000:]
        assert proc.output.count("]: loaded ") == 1                        # re-activating did not reload

        lifecycle_cli(env, "set", node, "deactivate", expect="Transitioning successful")
        lifecycle_cli(env, "set", node, "cleanup", expect="Transitioning successful")
        lifecycle_cli(env, "get", node, expect="unconfigured [1]")
        assert "Set parameter successful" in param_set(env, "resolution", "32x48")
        lifecycle_cli(env, "set", node, "configure", expect="Transitioning successful")
        lifecycle_cli(env, "set", node, "activate", expect="Transitioning successful")
        assert masks_flow(), proc.output[-3000:]
        assert probe.wait_for(lambda: json.loads(probe.received[class_info][-1].data)["resolution"] == "32x48", 30)

        pid = child_pids(proc.output, "ecmnet_segmentation_lifecycle")[0]
        lifecycle_cli(env, "set", node, "shutdown", expect="Transitioning successful")
        assert proc.wait_for_line("process has finished cleanly", 60) is not None, proc.output[-3000:]
        assert not pid_alive(pid)
        rc = proc.wait(60)                  # nothing left to run: launch ends by itself
        assert rc == 0, proc.output[-3000:]
        assert not any(s in proc.output for s in CLEAN_EXIT_FORBIDDEN), proc.output[-3000:]
    finally:
        proc.kill()
        harness.remove(probe.node)
