"""The ROS 2 workflow as a user runs it, with the real launch / launch_ros / ros2cli (../shared/ros2-extra):
colcon build (copy and --symlink-install) and the venv routes, `ros2 launch` / `ros2 run` /
`ros2 pkg executables`, the launch arguments, and Ctrl-C (SIGINT to the whole process group, as a
terminal sends it) ending with exit 0 and no traceback every time; SIGTERM too.

Every node is a real process talking real DDS on loopback with the probe in this process.
ECMNET_SIGINT_ROUNDS=50 runs the Ctrl-C test as the stress run documented in docs/ros.md.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

from ros_harness import (CLEAN_EXIT_FORBIDDEN, Probe, Process, child_pids, image_msg,  # noqa: E402
                                pid_alive, require_ros2_cli, ros2_env)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT = 120.0                      # start-up on CI's 2 shared cores: torch import + model load + warm-up
ROUNDS = int(os.environ.get("ECMNET_SIGINT_ROUNDS", "6"))
NODE = "ecmnet_segmentation"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module", autouse=True)
def _ros2_stack():
    require_ros2_cli()


@pytest.fixture(scope="module")
def registered_prefix(tmp_path_factory):
    """The venv route: `ecmnet-ros-register` writes the ament layout for the editable install."""
    prefix = tmp_path_factory.mktemp("ament_prefix")
    res = subprocess.run([str(BIN / "ecmnet-ros-register"), "--prefix", str(prefix)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (prefix / "share/ament_index/resource_index/packages/ecmnet_ros").is_file()
    return prefix


def source_files():
    """What a fresh clone has: tracked files plus new ones not ignored (so uncommitted work counts)."""
    res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, timeout=60)
    if res.returncode != 0:
        pytest.skip("needs a git checkout to copy the package into a workspace")
    return [f for f in res.stdout.decode().split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def colcon_workspaces(tmp_path_factory):
    """{'colcon': ws, 'colcon-symlink': ws}, each `colcon build` of a copy of this package."""
    colcon = BIN / "colcon"
    if not colcon.exists():
        pytest.fail("colcon is not installed in this venv (scripts/setup_env.sh installs colcon-common-extensions)")
    files = source_files()
    built = {}
    for route, flags in (("colcon", []), ("colcon-symlink", ["--symlink-install"])):
        ws = tmp_path_factory.mktemp(route)
        for f in files:
            dest = ws / "src" / "ecmnet_ros" / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest)
        res = subprocess.run([str(colcon), "build", *flags], cwd=ws, env=ros2_env(), capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        built[route] = ws
    return built


def launch_cmd(route, prefixes, *args):
    """(argv, env) for `ros2 launch` by package name, or by file path for the venv-path route."""
    if route.startswith("colcon"):
        ws = prefixes
        line = " ".join(["exec", "ros2", "launch", "ecmnet_ros", "segment.launch.py", *args])
        return ["bash", "-c", f". '{ws}/install/local_setup.bash' && {line}"], ros2_env(), ws
    if route == "venv-path":
        return ["ros2", "launch", str(REPO / "launch" / "segment.launch.py"), *args], ros2_env(), None
    return ["ros2", "launch", "ecmnet_ros", "segment.launch.py", *args], ros2_env([prefixes]), None


def start_launch(route, prefixes, *args):
    cmd, env, cwd = launch_cmd(route, prefixes, *args)
    return Process(cmd, env=env, cwd=cwd)


def node_args(ckpt, *extra):
    return [f"weights:={ckpt}", "device:=cpu", *extra]


# CPython prints this block from `ros2 launch` itself (never from the node, whose lines launch prefixes with
# `[name-N]`) when the SIGINT lands while the launch process runs a weakref callback: launch keeps Python's
# default SIGINT handler and catches the KeyboardInterrupt in its loop, but one raised inside a callback can
# only be reported and dropped (python/cpython#95959). Launch still handles the signal and exits 0.
LAUNCH_DROPPED_INTERRUPT = re.compile(r"^Exception ignored in: <function Weak[^\n]*\nTraceback \(most recent call "
                                      r"last\):\n(?:  [^\n]*\n)*KeyboardInterrupt:?[^\n]*$", re.M)


def clean_exit_problems(proc: Process, rc) -> list:
    """Everything that makes a stop unclean; CPython's dropped-interrupt report from launch itself is not."""
    out = LAUNCH_DROPPED_INTERRUPT.sub("", proc.output)
    problems = [f"launch exit status {rc}"] if rc != 0 else []
    problems += [f"output contains {s!r}" for s in CLEAN_EXIT_FORBIDDEN if s in out]
    if "process has finished cleanly" not in out:
        problems.append("launch did not report the node finishing cleanly")
    problems += [f"node pid {p} still alive" for p in child_pids(out, NODE) + child_pids(out, NODE + "_lifecycle")
                 if pid_alive(p)]
    return problems


def stop_with(proc: Process, sig=signal.SIGINT, timeout=60.0):
    proc.signal_group(sig)
    rc = proc.wait(timeout)
    if rc is None:
        proc.kill()
    return rc


def serve_frames(probe: Probe, topic: str, mask_topic: str, sec: int, timeout=TIMEOUT, proc=None):
    """Publish one image (again and again: best-effort input) until its mask comes back."""
    img = np.random.default_rng(sec).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    msg = image_msg(img, "rgb8", "cam_optical", sec, 7)

    def arrived():
        return any(m.header.stamp.sec == sec for m in probe.received[mask_topic])
    ok = probe.publish_until(topic, msg, arrived, timeout=timeout)
    assert ok, f"no mask on {mask_topic} for stamp {sec}" + (f"; output:\n{proc.output[-4000:]}" if proc else "")
    return next(m for m in probe.received[mask_topic] if m.header.stamp.sec == sec)


class Traffic:
    """A 30 Hz camera in a thread, so a signal lands while the node decodes, infers and publishes."""

    def __init__(self, probe: Probe, topic: str):
        self._pub = probe.publisher(topic, Image)
        img = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
        self._msg = image_msg(img, "rgb8", "cam", 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.wait(1 / 30):
            i += 1
            self._msg.header.stamp.sec = 1000 + i
            try:
                self._pub.publish(self._msg)
            except Exception:  # noqa: BLE001 - probe torn down first in a failing test
                return

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


def node_cmdline(proc: Process, name=NODE) -> str:
    pids = child_pids(proc.output, name)
    assert pids, proc.output
    with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


# ---------------------------------------------------------------------------------------------- routes
@pytest.mark.parametrize("route", ["colcon", "colcon-symlink", "venv-registered", "venv-path"])
def test_install_route_launch_run_and_ctrl_c(route, request, harness, tiny_checkpoint):
    """Each way of installing: the executables are where `ros2 run` and launch look, the launch file
    serves masks + LabelInfo, the node reports on /diagnostics the OpenMP wait policy it set before
    torch loaded (passive unless the user chose one), and Ctrl-C to the process group ends everything
    cleanly."""
    if route.startswith("colcon"):
        ws = request.getfixturevalue("colcon_workspaces")[route]
        install = ws / "install" / "ecmnet_ros"
        assert not (install / "bin").exists(), "console scripts must not land in install/ecmnet_ros/bin"
        for exe in ("ecmnet_segmentation", "ecmnet_segmentation_lifecycle"):
            assert os.access(install / "lib" / "ecmnet_ros" / exe, os.X_OK)
        launch_file = install / "share" / "ecmnet_ros" / "launch" / "segment.launch.py"
        assert launch_file.is_symlink() == (route == "colcon-symlink")
        assert (install / "share" / "ecmnet_ros" / "config" / "segment.yaml").is_file()
        assert (install / "share" / "ecmnet_ros" / "config" / "fastdds.xml").is_file()
        prefixes, where = ws, str(install / "lib" / "ecmnet_ros" / NODE)
        shell = f". '{ws}/install/local_setup.bash' && "
        env = ros2_env()
    elif route == "venv-registered":
        prefixes = request.getfixturevalue("registered_prefix")
        where, shell, env = str(prefixes / "lib" / "ecmnet_ros" / NODE), "", ros2_env([prefixes])
    else:
        prefixes, where, shell, env = None, str(BIN / NODE), None, None

    if shell is not None:                 # ros2 pkg / ros2 run need the package in the ament index
        res = subprocess.run(["bash", "-c", shell + "ros2 pkg executables ecmnet_ros"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        listed = set(res.stdout.split("\n"))
        assert {"ecmnet_ros ecmnet_segmentation", "ecmnet_ros ecmnet_segmentation_lifecycle"} <= listed, res.stdout
        res = subprocess.run(["bash", "-c", shell + "ros2 run ecmnet_ros ecmnet_segmentation --help"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "  weights (default" in res.stdout, res.stdout + res.stderr

    probe = Probe(harness, f"probe_route_{route.replace('-', '_')}")
    probe.watch("/camera/segmentation/mask", Image)
    probe.publisher("/camera/image_raw", Image)
    from vision_msgs.msg import LabelInfo
    probe.watch("/camera/segmentation/label_info", LabelInfo, qos=LATCHED)
    probe.watch("/diagnostics", DiagnosticArray)
    proc = start_launch(route, prefixes, *node_args(tiny_checkpoint))
    try:
        assert proc.wait_for_line("segmenting /camera/image_raw", TIMEOUT) is not None, proc.output
        assert node_cmdline(proc).split()[1] == where
        mask = serve_frames(probe, "/camera/image_raw", "/camera/segmentation/mask", 42, proc=proc)
        assert (mask.encoding, mask.height, mask.width, mask.header.frame_id) == ("mono8", 40, 60, "cam_optical")
        assert probe.wait_for(lambda: probe.count("/camera/segmentation/label_info") > 0, 30)
        info = probe.received["/camera/segmentation/label_info"][0]
        assert len(info.class_map) == 11 and info.class_map[0].class_name == "Sky"

        def node_status():
            return next(({kv.key: kv.value for kv in s.values} for arr in probe.received["/diagnostics"]
                         for s in arr.status if s.name.startswith(f"/{NODE}: ")), None)
        assert probe.wait_for(lambda: node_status() is not None, 30)
        assert node_status()["omp_wait_policy"] == (os.environ.get("OMP_WAIT_POLICY") or "PASSIVE")
        assert int(node_status()["cpu_threads"]) >= 1
        rc = stop_with(proc)
        assert not clean_exit_problems(proc, rc), (clean_exit_problems(proc, rc), proc.output[-4000:])
        assert "parameters:" not in proc.output        # a debug line: log_level defaults to info
    finally:
        proc.kill()
        harness.remove(probe.node)


# ------------------------------------------------------------------------------------------- arguments
def test_launch_arguments_layer_remap_namespace_sim_time_log_level(harness, registered_prefix, tiny_checkpoint,
                                                                   tmp_path):
    """params_file is layered over config/segment.yaml (its input topic survives), remappings rename
    the input, namespace moves the node (absolute topics stay), use_sim_time reaches the node,
    log_level:=debug shows debug lines, fastdds_profile reaches the node's environment."""
    user = tmp_path / "robot.yaml"
    user.write_text("/**/ecmnet_segmentation:\n  ros__parameters:\n    publish_overlay: true\n"
                    "    publish_confidence: true\n    confidence_threshold: 0.3\n")
    profile = tmp_path / "profile.xml"
    profile.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<dds xmlns="http://www.eprosima.com">\n'
                       '  <profiles><participant profile_name="test" is_default_profile="true"><rtps/>'
                       '</participant></profiles>\n</dds>\n')
    from vision_msgs.msg import LabelInfo
    probe = Probe(harness, "probe_args")
    for kind in ("mask", "overlay", "confidence", "color"):
        probe.watch(f"/camera/segmentation/{kind}", Image)
    probe.watch("/camera/segmentation/label_info", LabelInfo, qos=LATCHED)
    probe.watch("/perception/ecmnet_segmentation/class_info", String, qos=LATCHED)
    probe.publisher("/front/image_raw", Image)
    probe.publisher("/camera/image_raw", Image)
    proc = start_launch("venv-registered", registered_prefix, *node_args(tiny_checkpoint),
                        f"params_file:={user}", "namespace:=perception", "remappings:=/camera/image_raw:=/front/image_raw",
                        "use_sim_time:=true", "log_level:=debug", f"fastdds_profile:={profile}")
    try:
        assert proc.wait_for_line("segmenting /camera/image_raw", TIMEOUT) is not None, proc.output
        mask = serve_frames(probe, "/front/image_raw", "/camera/segmentation/mask", 77, proc=proc)
        assert probe.wait_for(lambda: probe.count("/camera/segmentation/overlay") and
                              probe.count("/camera/segmentation/confidence"), 30)
        conf = next(m for m in probe.received["/camera/segmentation/confidence"] if m.header.stamp.sec == 77)
        assert conf.encoding == "mono8"
        masks = np.frombuffer(bytes(mask.data), np.uint8)
        low = np.frombuffer(bytes(conf.data), np.uint8) < round(0.3 * 255)
        assert (masks[low] == 255).all() and (masks[~low] < 11).all()
        assert probe.count("/camera/segmentation/color") > 0          # a default the user file did not touch
        # nothing listens on the unremapped name
        assert probe.node.count_subscribers("/camera/image_raw") == 0
        assert probe.wait_for(lambda: probe.count("/perception/ecmnet_segmentation/class_info") > 0, 30)
        assert probe.wait_for(lambda: probe.count("/camera/segmentation/label_info") > 0, 30)
        info = probe.received["/camera/segmentation/label_info"][0]
        assert abs(info.threshold - 0.3) < 1e-6 and (info.class_map[-1].class_id, info.class_map[-1].class_name) == (
            255, "UNLABELED")
        res = subprocess.run(["ros2", "param", "get", "/perception/ecmnet_segmentation", "use_sim_time",
                              "--no-daemon", "--spin-time", "5"], env=ros2_env([registered_prefix]),
                             capture_output=True, text=True, timeout=120)
        assert "Boolean value is: True" in res.stdout, res.stdout + res.stderr
        assert "parameters: {" in proc.output                       # the node's debug line
        pid = child_pids(proc.output, NODE)[0]
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        assert environ[b"FASTDDS_DEFAULT_PROFILES_FILE"].decode() == str(profile)
        rc = stop_with(proc)
        assert not clean_exit_problems(proc, rc), (clean_exit_problems(proc, rc), proc.output[-4000:])
    finally:
        proc.kill()
        harness.remove(probe.node)


def test_launch_argument_errors_are_reported(registered_prefix, tiny_checkpoint, tmp_path):
    for bad, message in (("params_file:=/nonexistent.yaml", "no such file '/nonexistent.yaml'"),
                         ("remappings:=just_a_name", "'just_a_name' is not from:=to"),
                         ("managed:=maybe", "managed must be true or false")):
        proc = start_launch("venv-registered", registered_prefix, *node_args(tiny_checkpoint), bad)
        rc = proc.wait(TIMEOUT)
        assert rc not in (0, None) and message in proc.output, proc.output
        assert "process started" not in proc.output


# -------------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_under_launch_ends_cleanly_every_round(harness, registered_prefix, tiny_checkpoint):
    """SIGINT to the process group of `ros2 launch` (what Ctrl-C in a terminal does; launch runs
    non-interactively here, so it forwards a second SIGINT to the node too). Rounds cycle through
    three moments: during start-up (weights loaded, warm-up and activation to come), idle, and under 30 Hz traffic; every other
    round starts the lifecycle node (managed:=true, autostart)."""
    probe = Probe(harness, "probe_ctrl_c")
    probe.watch("/camera/segmentation/mask", Image)
    probe.publisher("/camera/image_raw", Image)
    results = []
    try:
        for r in range(ROUNDS):
            phase = ("start-up", "idle", "traffic")[r % 3]
            managed = r % 2 == 1
            proc = start_launch("venv-registered", registered_prefix, *node_args(tiny_checkpoint),
                                f"managed:={str(managed).lower()}")
            traffic = None
            t0 = time.monotonic()
            try:
                if phase == "start-up":
                    assert proc.wait_for_line("]: loaded ", TIMEOUT) is not None, proc.output
                else:
                    assert proc.wait_for_line("segmenting", TIMEOUT) is not None, proc.output
                if phase == "traffic":
                    before = probe.count("/camera/segmentation/mask")
                    traffic = Traffic(probe, "/camera/image_raw")
                    assert probe.wait_for(lambda: probe.count("/camera/segmentation/mask") > before, TIMEOUT), \
                        proc.output
                rc = stop_with(proc)
            finally:
                if traffic:
                    traffic.stop()
                proc.kill()
            problems = clean_exit_problems(proc, rc)
            results.append((r, phase, managed, rc, round(time.monotonic() - t0, 1), problems))
            if problems:
                print(proc.output[-6000:])
    finally:
        harness.remove(probe.node)
    failed = [res for res in results if res[-1]]
    print(f"Ctrl-C rounds: {len(results) - len(failed)}/{len(results)} clean (exit 0, no traceback); "
          + ", ".join(f"{r}:{phase}{'/managed' if m else ''}={rc}" for r, phase, m, rc, _, _ in results))
    assert not failed, failed


def test_sigterm_and_repeated_signals_exit_zero(harness, registered_prefix, tiny_checkpoint):
    """SIGTERM to launch's group (launch itself gives up at once and says so; the node must still exit
    cleanly), and SIGINT, SIGTERM, SIGINT straight to a node under traffic (launch's escalation, a
    user pressing Ctrl-C again): exit status 0, no traceback."""
    probe = Probe(harness, "probe_sigterm")
    probe.watch("/camera/segmentation/mask", Image)
    probe.publisher("/camera/image_raw", Image)
    try:
        proc = start_launch("venv-registered", registered_prefix, *node_args(tiny_checkpoint))
        try:
            assert proc.wait_for_line("segmenting", TIMEOUT) is not None, proc.output
            pid = child_pids(proc.output, NODE)[0]
            proc.signal_group(signal.SIGTERM)
            proc.wait(60)
            deadline = time.monotonic() + 60
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not pid_alive(pid), "the node outlived SIGTERM"
            node_lines = "\n".join(ln for ln in proc.output.splitlines() if ln.startswith(f"[{NODE}-1]"))
            assert not any(s in node_lines for s in CLEAN_EXIT_FORBIDDEN), node_lines
        finally:
            proc.kill()

        for signals in ((signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM, signal.SIGINT)):
            node = Process([BIN / NODE, "--ros-args", "-p", f"weights:={tiny_checkpoint}", "-p", "device:=cpu",
                            "-p", "input_topics:=[/camera/image_raw]"], env=ros2_env())
            traffic = None
            try:
                assert node.wait_for_line("segmenting", TIMEOUT) is not None, node.output
                before = probe.count("/camera/segmentation/mask")
                traffic = Traffic(probe, "/camera/image_raw")
                assert probe.wait_for(lambda: probe.count("/camera/segmentation/mask") > before, TIMEOUT)
                for sig in signals:
                    os.kill(node.proc.pid, sig)
                    time.sleep(0.01)
                rc = node.wait(60)
            finally:
                if traffic:
                    traffic.stop()
                node.kill()
            assert rc == 0, (signals, rc, node.output[-4000:])
            assert not any(s in node.output for s in CLEAN_EXIT_FORBIDDEN), node.output[-4000:]
    finally:
        harness.remove(probe.node)
