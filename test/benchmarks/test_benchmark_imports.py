"""Every import in benchmarks/ resolves, the lazy ones inside functions too (a file move once left
`benchmarks/transport.py` importing a module that no longer existed, found only when it ran), and
the CPU-only benchmarks run end to end on a tiny setting."""
import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# what the benchmark scripts put on sys.path themselves
SEARCH = [str(REPO), str(REPO / "test" / "ros")]
OPTIONAL = {"triton", "onnx", "onnxruntime", "tensorrt", "mamba_ssm", "rclpy", "diagnostic_msgs", "sensor_msgs",
            "std_msgs", "rosbag2_py", "launch", "launch_ros", "matplotlib", "vision_msgs", "lifecycle_msgs"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-node.level])
            yield node.lineno, package + ("." + node.module if node.module else "")


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_import_resolves(path, monkeypatch):
    for entry in reversed(SEARCH):
        monkeypatch.syspath_prepend(entry)
    missing = []
    for line, name in _imports(path):
        if name.split(".")[0] in OPTIONAL:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(f"line {line}: {name}")
    assert not missing, f"{path.relative_to(REPO)} imports what does not exist: {missing}"


def test_cpu_latency_benchmark_runs_and_checks(tiny_checkpoint):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cpu_latency", "--weights", str(tiny_checkpoint),
                           "--size", "64x96", "--threads", "1", "--frames", "2", "--rounds", "2",
                           "--rows", "plain,engine", "--check", "--tolerance", "100"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check: engine default" in proc.stdout and "\nengine " in proc.stdout and "\nplain " in proc.stdout
