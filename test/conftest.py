"""Shared fixtures: a tiny random-init checkpoint, the CamVid path (skips when absent), and a runner for
scripts under Triton's CPU interpreter."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # test/training and test/benchmarks are folders, not packages: the repo's
    sys.path.append(str(REPO))  # training/ and benchmarks/ packages must stay importable behind them
CAMVID = Path(os.environ.get("ECMNET_CAMVID", REPO.parent / "shared" / "datasets" / "camvid"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser):
    parser.addoption("--gpu-only", action="store_true",
                     help="run only the tests that need CUDA (those with a skipif whose reason names CUDA); "
                          "scripts/device/gpu_tests.sh runs the suite this way on the GPU machine")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--gpu-only"):
        return
    gpu = [item for item in items
           if any("CUDA" in str(mark.kwargs.get("reason", "")) for mark in item.iter_markers("skipif"))]
    config.hook.pytest_deselected(items=[item for item in items if item not in gpu])
    items[:] = gpu


@pytest.fixture(autouse=True)
def _no_kernel_tuning_cache(monkeypatch):
    """Tests neither read nor write the user's kernel tuning cache (test/core/ops/test_tuning.py sets its own)."""
    from ecmnet_core.ops import tuning

    monkeypatch.setattr(tuning, "CACHE_PATH", None)


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    if not (CAMVID / "val").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID}")
    return CAMVID


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Random-init 11-class CamVid-metadata checkpoint (fast on CPU at small sizes)."""
    from ecmnet_core.runtime.checkpoint import make_metadata, save_checkpoint
    from ecmnet_core.model import ECMNet
    from ecmnet_core.palettes import CAMVID_CLASSES, CAMVID_COLORS

    torch.manual_seed(0)
    model = ECMNet(num_classes=11).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, make_metadata(11, CAMVID_CLASSES, CAMVID_COLORS, ignore_index=11,
                                               input_size=(64, 96), dataset="random-init"))
    return path


@pytest.fixture
def triton_interpreter(request):
    """run(script, timeout): the script in a fresh Python with TRITON_INTERPRET=1 (the interpreter is
    chosen when kernels are defined), the repo and the calling test's folder importable; asserts it
    prints 'ok' last."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("needs Triton (its CPU interpreter)")

    def run(script: str, timeout: int = 600):
        here = Path(request.path).resolve().parent
        env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(REPO), str(here), *sys.path]))
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]

    return run
