"""`ecmnet-segment` as users start it: console script + shipped YAML over real DDS, clear
start-up errors, and the launch file's arguments kept in sync with the node's parameters."""
import ast
import json
import os
import re
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
from ros_harness import Probe, RosHarness, image_msg, isolate_ros_domain, require_ros2_cli, stop_process  # noqa: E402

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


def _launch_constant(tree, name):
    return next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == name)


def test_launch_file_compiles_and_its_arguments_are_node_parameters():
    source = LAUNCH.read_text()
    tree = ast.parse(source)          # compiles
    compile(source, str(LAUNCH), "exec")
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    overrides = _launch_constant(tree, "OVERRIDES")
    launch_only = set(_launch_constant(tree, "LAUNCH_ONLY"))
    assert {"params_file", "namespace", "log_level", "use_sim_time", "remappings", "managed", "autostart"} <= launch_only
    assert launch_only <= declared
    assert set(overrides) == declared - launch_only
    assert set(overrides) <= set(PARAM_NAMES), set(overrides) - set(PARAM_NAMES)
    for required in ("weights", "backend", "device", "input_topics", "resolution"):
        assert required in declared
    scripts = set(re.findall(r'"(\S+) = ecmnet_ros\.', (REPO / "setup.py").read_text()))
    assert set(_launch_constant(tree, "EXECUTABLES").values()) <= scripts


def _load_launch_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_launch_description_declares_every_argument():
    require_ros2_cli()
    tree = ast.parse(LAUNCH.read_text())
    ld = _load_launch_module().generate_launch_description()
    names = {a.name for a in ld.get_launch_arguments()}
    assert names == set(_launch_constant(tree, "OVERRIDES")) | set(_launch_constant(tree, "LAUNCH_ONLY"))


def test_launch_fastdds_profile_choice(tmp_path, monkeypatch):
    """The package's config/fastdds.xml goes to the node unless the user named a profile already;
    fastdds_profile:=PATH wins; :=none applies none; a missing package file is skipped."""
    require_ros2_cli()
    from launch import LaunchContext

    mod = _load_launch_module()
    shipped = tmp_path / "fastdds.xml"
    shipped.write_text("<dds/>")
    own = tmp_path / "own.xml"
    own.write_text("<dds/>")

    def env_for(choice, environ=None, shipped_exists=True):
        monkeypatch.setattr(mod, "FASTDDS_PROFILE", str(shipped if shipped_exists else tmp_path / "absent.xml"))
        for k in mod.FASTDDS_ENV:
            monkeypatch.delenv(k, raising=False)
        for k, v in (environ or {}).items():
            monkeypatch.setenv(k, v)
        context = LaunchContext()
        context.launch_configurations["fastdds_profile"] = choice
        return mod._fastdds_env(context)

    monkeypatch.delenv("ROS_DISTRO", raising=False)                 # unset (PyPI wheels) or kilted: the Fast DDS 3 name
    one = ["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert env_for("") == dict.fromkeys(one, str(shipped))
    assert env_for("", shipped_exists=False) == {}
    assert env_for("", {"FASTDDS_DEFAULT_PROFILES_FILE": str(own)}) == {}
    assert env_for("", {"FASTRTPS_DEFAULT_PROFILES_FILE": str(own)}) == {}
    assert env_for(str(own), {"FASTDDS_DEFAULT_PROFILES_FILE": "/x.xml"}) == dict.fromkeys(one, str(own))
    monkeypatch.setenv("ROS_DISTRO", "kilted")
    assert env_for("") == dict.fromkeys(one, str(shipped))
    monkeypatch.setenv("ROS_DISTRO", "jazzy")                        # Fast DDS 2.x reads only the old name
    assert env_for("") == {"FASTRTPS_DEFAULT_PROFILES_FILE": str(shipped)}
    assert env_for("none") == {}
    with pytest.raises(FileNotFoundError, match="fastdds_profile"):
        env_for(str(tmp_path / "missing.xml"))


def test_launch_uses_the_console_script_when_the_package_is_not_in_the_ament_index(monkeypatch, tmp_path):
    require_ros2_cli()
    mod = _load_launch_module()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))           # an index without ecmnet_ros
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert mod._executable(False) == (None, str(Path(sys.executable).parent / "ecmnet_segmentation"))
    assert mod._executable(True) == (None, str(Path(sys.executable).parent / "ecmnet_segmentation_lifecycle"))
    assert mod._remappings("/a:=/b, c:=d  e:=/f") == [("/a", "/b"), ("c", "d"), ("e", "/f")]


def test_package_xml_declares_every_ros_package_the_code_imports():
    """Every top-level import in ecmnet_ros/ and launch/ that is a ROS package (in the ament index)
    is an exec_depend, plus the tools a user runs: ros2launch, ros2run (console scripts via ros2 run)."""
    require_ros2_cli()
    from xml.etree import ElementTree

    from ament_index_python.packages import get_packages_with_prefixes

    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    ros_packages = set(get_packages_with_prefixes())
    root = ElementTree.parse(REPO / "package.xml").getroot()
    exec_depends = {e.text for e in root.iter() if e.tag in ("exec_depend", "depend")}
    imported = set()
    for path in list((REPO / "ecmnet_ros").glob("*.py")) + list((REPO / "launch").glob("*.py")):
        if path.name == "testing.py":             # test helpers: test_depend
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    needed = (imported & ros_packages) | {"ros2launch", "ros2run"}
    assert {"rclpy", "launch", "launch_ros", "vision_msgs"} <= needed
    assert needed <= exec_depends, sorted(needed - exec_depends)
    assert "lifecycle_msgs" in exec_depends          # rclpy.lifecycle and `ros2 lifecycle` need it


def test_ecmnet_ros_register_writes_the_ament_layout_and_removes_it(tmp_path):
    """What ros2 launch/run/pkg look up, as links; idempotent; --remove leaves no ecmnet_ros entry;
    a file it did not write is refused with one error line."""
    register = [str(Path(sys.executable).parent / "ecmnet-ros-register"), "--prefix", str(tmp_path)]
    for _ in range(2):
        res = subprocess.run(register, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
    share = tmp_path / "share" / "ecmnet_ros"
    assert (tmp_path / "share/ament_index/resource_index/packages/ecmnet_ros").is_file()
    assert (share / "launch" / "segment.launch.py").resolve() == LAUNCH.resolve()
    assert not (share / "launch").is_symlink()          # ros2 launch's os.walk does not enter linked folders
    assert (share / "config" / "segment.yaml").resolve() == YAML.resolve()
    for exe in ("ecmnet_segmentation", "ecmnet_segmentation_lifecycle", "ecmnet-predict"):
        link = tmp_path / "lib" / "ecmnet_ros" / exe
        assert link.is_symlink() and os.access(link, os.X_OK)
    res = subprocess.run(register + ["--remove"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not share.exists() and not (tmp_path / "lib" / "ecmnet_ros").exists()
    assert not (tmp_path / "share/ament_index/resource_index/packages/ecmnet_ros").exists()
    share.mkdir(parents=True)
    (share / "package.xml").write_text("<package/>")
    res = subprocess.run(register, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert (share / "package.xml").read_text() == "<package/>"


def test_node_without_vision_msgs_says_so_once_and_serves_masks(tiny_checkpoint, tmp_path):
    """A ROS install without vision_msgs: one warning, masks as usual, ~/class_info still latched."""
    stub = tmp_path / "no_vision_msgs" / "vision_msgs"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('vision_msgs hidden by the test')\n")
    isolate_ros_domain()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(stub.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(node_cmd("-p", f"weights:={tiny_checkpoint}", "-p", "device:=cpu",
                                     "-p", "input_topics:=[/novm/image_raw]"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        with RosHarness() as h:
            probe = Probe(h, "probe_novm")
            probe.watch("/novm/segmentation/mask", Image)
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            probe.watch("/ecmnet_segmentation/class_info", String, qos=latched)
            probe.publisher("/novm/image_raw", Image)
            img = np.zeros((24, 32, 3), np.uint8)
            assert probe.publish_until("/novm/image_raw", image_msg(img, "rgb8", "c", 5),
                                       lambda: probe.count("/novm/segmentation/mask") > 0, timeout=90), _stop(proc)
            assert probe.wait_for(lambda: probe.count("/ecmnet_segmentation/class_info") > 0, 30)
            assert probe.node.count_publishers("/novm/segmentation/label_info") == 0
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert out.count("vision_msgs is not installed") == 1, out
    assert "Traceback" not in out


def test_docs_reference_every_parameter():
    doc = (REPO / "docs" / "ros.md").read_text()
    for name in PARAM_NAMES:
        assert f"`{name}`" in doc, f"docs/ros.md does not document {name}"
