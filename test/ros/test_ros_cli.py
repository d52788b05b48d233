"""`ecmnet-segment` as users start it: console script + shipped YAML over real DDS, clear
start-up errors, and the launch file's arguments kept in sync with the node's parameters."""
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from ecmnet_ros.conversions import image_to_numpy  # noqa: E402
from ecmnet_ros.params import PARAM_NAMES, PARAMETERS  # noqa: E402
from ros_harness import Probe, RosHarness, image_msg, isolate_ros_domain, stop_process  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
YAML = REPO / "config" / "segment.yaml"
LAUNCH = REPO / "launch" / "segment.launch.py"
SCRIPT = Path(sys.executable).parent / "ecmnet-segment"


def node_cmd(*ros_args):
    exe = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "ecmnet_ros.segmentation_node"]
    return exe + ["--ros-args", *ros_args]


def run_cli(*ros_args, timeout=120):
    isolate_ros_domain()
    return subprocess.run(node_cmd(*ros_args), capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def test_console_script_with_shipped_yaml_serves_masks(tiny_checkpoint):
    """Same YAML as the launch file, no launch: the YAML's input topic must be used."""
    isolate_ros_domain()
    proc = subprocess.Popen(node_cmd("--params-file", str(YAML), "-p", f"weights:={tiny_checkpoint}",
                                     "-p", "device:=cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    try:
        with RosHarness() as h:
            probe = Probe(h, "probe_cli")
            probe.watch("/camera/segmentation/mask", Image)
            probe.watch("/camera/segmentation/color", Image)
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            probe.watch("/ecmnet_segmentation/class_info", String, qos=latched)
            probe.publisher("/camera/image_raw", Image)
            img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
            ok = probe.publish_until("/camera/image_raw", image_msg(img, "bgr8", "cam_optical", 42, 7),
                                     lambda: probe.count("/camera/segmentation/color") > 0
                                     and probe.count("/camera/segmentation/mask") > 0, timeout=90)
            assert ok, f"no mask from the node process; its output:\n{_stop(proc)}"
            m = probe.received["/camera/segmentation/mask"][0]
            assert (m.encoding, m.height, m.width, m.header.frame_id) == ("mono8", 40, 60, "cam_optical")
            assert (m.header.stamp.sec, m.header.stamp.nanosec) == (42, 7)
            assert image_to_numpy(m).max() < 11
            assert probe.wait_for(lambda: probe.count("/ecmnet_segmentation/class_info") > 0, 30)
            assert len(json.loads(probe.received["/ecmnet_segmentation/class_info"][0].data)["classes"]) == 11
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "segmenting /camera/image_raw on cpu" in out


def _stop(proc):
    return stop_process(proc)


@pytest.mark.parametrize("args,match", [
    (("--params-file", "/nonexistent/segment.yaml"), "error: invalid ROS arguments: Couldn't parse params file"),
    (("-p", "weights:=/nonexistent/model.pt"), "error: checkpoint not found: /nonexistent/model.pt"),
    (("-p", "qos_depth:=0"), "error: parameter qos_depth"),
    (("-p", "resolution:=huge"), "error: parameter resolution must be"),
])
def test_cli_start_errors_are_one_clear_line(args, match):
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert any(match in ln for ln in lines), res.stderr
    assert "Traceback" not in res.stderr


def test_cli_help_lists_every_parameter():
    exe = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "ecmnet_ros.segmentation_node"]
    res = subprocess.run(exe + ["--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for name in PARAM_NAMES:
        assert f"  {name} (default" in res.stdout


def test_shipped_yaml_sets_exactly_the_node_parameters_with_matching_types():
    doc = yaml.safe_load(YAML.read_text())
    (key, body), = doc.items()
    assert key.endswith("ecmnet_segmentation")
    params = body["ros__parameters"]
    assert set(params) == set(PARAM_NAMES)
    for p in PARAMETERS:
        assert type(params[p.name]) is type(p.default), p.name


def test_launch_file_compiles_and_its_arguments_are_node_parameters():
    source = LAUNCH.read_text()
    tree = ast.parse(source)          # compiles
    compile(source, str(LAUNCH), "exec")
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    overrides = next(ast.literal_eval(n.value) for n in tree.body
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "OVERRIDES")
    launch_only = {"params_file", "namespace", "log_level"}
    assert launch_only <= declared
    assert set(overrides) == declared - launch_only
    assert set(overrides) <= set(PARAM_NAMES), set(overrides) - set(PARAM_NAMES)
    for required in ("weights", "backend", "device", "input_topics", "resolution"):
        assert required in declared
    assert 'executable="ecmnet_segmentation"' in source


def test_launch_description_builds_where_launch_ros_exists():
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI; needs a ROS 2 install")
    import importlib.util

    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    names = {a.name for a in ld.get_launch_arguments()}
    assert {"weights", "backend", "device", "input_topics", "resolution", "namespace", "params_file"} <= names


def test_docs_reference_every_parameter():
    doc = (REPO / "docs" / "ros.md").read_text()
    for name in PARAM_NAMES:
        assert f"`{name}`" in doc, f"docs/ros.md does not document {name}"
