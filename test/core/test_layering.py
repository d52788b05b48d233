"""The package map of docs/architecture.md holds: imports in ecmnet_core run one way
(utils, palettes <- ops <- model <- inference <- runtime <- cli), without cycles, the model never
sees a kernel, and the model, inference rewrites and engine build and run on CPU without Triton."""
import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "ecmnet_core"
RANK = {"utils": 0, "palettes": 0, "ops": 1, "model": 2, "inference": 3, "runtime": 4, "cli": 5}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def _imports(path: Path):
    """(imported module, line) for every import statement in the file, lazy ones included, with
    relative imports resolved and `from pkg import submodule` counted as the submodule."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield (sub if _is_module(sub) else source), node.lineno


def _layer(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ecmnet_core" else None


def _core_files():
    return sorted(p for p in CORE.rglob("*.py") if p != CORE / "__init__.py")


def test_every_core_module_sits_in_a_known_layer():
    assert {_layer(_module_name(p)) for p in _core_files()} == set(RANK)


def test_imports_never_point_up_the_layers():
    upward = []
    for path in _core_files():
        here = _layer(_module_name(path))
        for target, line in _imports(path):
            there = _layer(target)
            if target == "ecmnet_core" or (there is not None and RANK[there] > RANK[here]):
                upward.append(f"{path.relative_to(REPO)}:{line} ({here}) imports {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycle_between_core_modules():
    """Edges to a module's own parent packages are left out: Python runs those first anyway."""
    graph = defaultdict(set)
    for path in _core_files():
        name = _module_name(path)
        for target, _ in _imports(path):
            if target.startswith("ecmnet_core.") and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_model_never_sees_a_kernel():
    """model/ imports from ops only the SS2D scan registry and the PyTorch references, never Triton."""
    seen = []
    for path in sorted((CORE / "model").rglob("*.py")):
        for target, line in _imports(path):
            ok = (target.split(".")[0] != "triton" and not target.startswith("ecmnet_core.ops.")
                  or target == "ecmnet_core.ops.ss2d" or target.endswith(".reference"))
            if not ok:
                seen.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not seen, "\n".join(seen)


def test_triton_modules_load_only_through_the_guard():
    """No module imports a Triton kernel module (ops/<op>/triton.py, the jit helpers in _triton_lib)
    except other kernel modules and the SS2D backend next to its kernels, whose loader raises
    BackendUnavailable instead; the dispatchers get theirs from ops._triton.load_kernels."""
    direct = set()
    for path in _core_files():
        name = _module_name(path)
        for target, line in _imports(path):
            kernel = target.endswith(".triton") or target.endswith("._triton_lib")
            same_folder = name.rpartition(".")[0] == target.rpartition(".")[0]
            if kernel and not (name.endswith(".triton") or same_folder):
                direct.add(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not direct, "\n".join(sorted(direct))


@pytest.mark.parametrize("package", ["ecmnet_ros", "training"])
def test_ros_and_training_use_only_the_public_layers(package):
    """They build on model, runtime, utils, palettes and cli.common, not on ops or inference internals."""
    allowed = ("ecmnet_core.model", "ecmnet_core.runtime", "ecmnet_core.utils", "ecmnet_core.palettes",
               "ecmnet_core.cli.common")
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for target, line in _imports(path):
            if target.startswith("ecmnet_core") and not target.startswith(allowed):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_importing_the_package_is_light_and_its_public_names_resolve():
    done = _python(
        "import sys, ecmnet_core\n"
        "assert 'torch' not in sys.modules, 'import ecmnet_core imported torch'\n"
        "for name in ecmnet_core.__all__: getattr(ecmnet_core, name)\n"
        "from ecmnet_core import ECMNet, SegmentationEngine, load_model\n"
        "from ecmnet_core.model import ECMNet as M\n"
        "assert ECMNet is M\n"
        "print('ok')\n")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_model_inference_and_engine_run_on_cpu_without_triton(tmp_path):
    """sys.modules['triton'] = None makes every `import triton` fail, as on a machine without it."""
    done = _python(f"""
import sys
sys.modules["triton"] = None
import numpy as np
import torch
from ecmnet_core.model import ECMNet
from ecmnet_core.inference import optimize_for_inference
from ecmnet_core.runtime.checkpoint import make_metadata, save_checkpoint
from ecmnet_core.runtime.engine import SegmentationEngine
torch.manual_seed(0)
model = ECMNet(num_classes=5).eval()
x = torch.randn(1, 3, 64, 96)
with torch.no_grad():
    ref = model(x)
    assert ref.shape == (1, 5, 64, 96)
    import copy
    fast = optimize_for_inference(copy.deepcopy(model), channels_last_kernels=True, fused_edab=True)
    torch.testing.assert_close(fast(x), ref, rtol=1e-4, atol=1e-4)
path = save_checkpoint({str(tmp_path / 'm.pt')!r}, model, make_metadata(5, input_size=(64, 96)))
res = SegmentationEngine(path, device="cpu").infer(np.zeros((64, 96, 3), np.uint8))
assert res.mask.shape == (64, 96)
assert sys.modules["triton"] is None
kernels = sorted(m for m in sys.modules if m.startswith("ecmnet_core") and m.endswith(".triton"))
assert not kernels, kernels
print("ok")
""")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
