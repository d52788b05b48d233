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


# ----------------------------------------------------------------------------- hostile inputs
# Shared by test/core/cli/test_hostile_inputs.py, test/training/test_hostile_training_inputs.py and
# test/ros/test_hostile_bag_inputs.py: every tool must answer bad input with one `error:` line on
# stderr, exit status 2, no traceback and nothing half-written.

@pytest.fixture(scope="session")
def bad_checkpoints(tiny_checkpoint, tmp_path_factory) -> dict:
    """name -> path of a checkpoint whose parts disagree or that is not a checkpoint at all,
    with the text its one error line must contain. Built from the tiny checkpoint."""
    import copy

    import numpy as np

    root = tmp_path_factory.mktemp("bad_ckpt")
    blob = torch.load(tiny_checkpoint, weights_only=True)
    raw = tiny_checkpoint.read_bytes()

    def variant(name, change):
        b = copy.deepcopy(blob)
        change(b)
        torch.save(b, root / name)
        return root / name

    def files(name, data):
        (root / name).write_bytes(data)
        return root / name

    cases = {
        "metadata_19_classes": (variant("meta19.pt", lambda b: b["metadata"].update(
            classes=[f"c{i}" for i in range(19)], colors=[[0, 0, 0]] * 19)), "names 19 classes but the model predicts 11"),
        "config_19_weights_11": (variant("cfg19.pt", lambda b: b["model_config"].update(num_classes=19)),
                                 "classifier.weight has shape [11, 32, 1, 1] but model_config describes [19"),
        "no_metadata": (variant("nometa.pt", lambda b: b.pop("metadata")), "has no 'metadata' entry"),
        "no_model_config": (variant("nocfg.pt", lambda b: b.pop("model_config")), "has no 'model_config' entry"),
        "no_state_dict": (variant("nostate.pt", lambda b: b.pop("state_dict")), "has no 'state_dict' entry"),
        "metadata_not_a_mapping": (variant("metalist.pt", lambda b: b.update(metadata=[1, 2])),
                                   "'metadata' must be a mapping"),
        "colour_out_of_range": (variant("colour.pt", lambda b: b["metadata"]["colors"].__setitem__(3, [0, 0, 300])),
                                "colour 3 must be [r, g, b]"),
        "no_std": (variant("nostd.pt", lambda b: b["metadata"].pop("std")), "std must be 3 finite numbers"),
        "unknown_config_key": (variant("cfgkey.pt", lambda b: b["model_config"].update(banana=1)),
                               "unknown ECMNet config keys"),
        "absurd_config": (variant("cfghuge.pt", lambda b: b["model_config"].update(widths=[10 ** 6] * 3)),
                          "widths must hold ints in 1..1024"),
        "extra_weight": (variant("extra.pt", lambda b: b["state_dict"].update(stray=torch.zeros(1))),
                         "unexpected ['stray']"),
        "nan_weights": (variant("nan.pt", lambda b: b["state_dict"]["classifier.weight"].fill_(float("nan"))),
                        "NaN or infinite"),
        "future_version": (variant("future.pt", lambda b: b.update(version=99)), "checkpoint version 99"),
        "not_ecmnet": (variant("foreign.pt", lambda b: b.pop("format")), "not an ECMNet checkpoint"),
        "random_bytes": (files("random.pt", np.random.default_rng(0).bytes(5000)), "is not a readable checkpoint"),
        "zero_bytes": (files("zero.pt", b""), "is empty (0 bytes)"),
        "truncated": (files("truncated.pt", raw[: len(raw) // 2]), "is not a readable checkpoint"),
        "garbage_yaml": (files("metadata.yaml", b"classes: [a, b\n  - :: garbage {{{\n"), "is not a readable checkpoint"),
        "full_pickle": (root / "pickle.pt", "weights-only loader refused it"),
        "directory": (root / "dir.pt", "is a directory"),
        "fifo": (root / "fifo.pt", "is not a regular file"),      # opening it would block forever
    }
    os.mkfifo(root / "fifo.pt")
    # a full pickle, as training scripts that save their argparse Namespace write: weights_only refuses it
    import argparse
    torch.save({"format": "ecmnet-checkpoint", "args": argparse.Namespace(lr=0.1)}, root / "pickle.pt")
    (root / "dir.pt").mkdir()
    return cases


@pytest.fixture(scope="session")
def hostile_images(tmp_path_factory) -> dict:
    """name -> (path, text its one error line must contain): images a tool must refuse cleanly."""
    import struct
    import zlib

    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("hostile_images")
    good = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(root / "good.png"), good)
    cv2.imwrite(str(root / "good.jpg"), good)
    png, jpg = (root / "good.png").read_bytes(), (root / "good.jpg").read_bytes()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    def png_claiming(w, h):     # a valid header over a few bytes of pixels: a decompression bomb
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))

    files = {
        "truncated_png": ("trunc.png", png[: len(png) // 2], "corrupt or truncated"),
        "truncated_jpeg": ("trunc.jpg", jpg[: len(jpg) // 2], "corrupt or truncated"),
        "random_bytes": ("random.png", np.random.default_rng(1).bytes(600), "not a known image format"),
        "empty_file": ("empty.jpg", b"", "not a known image format"),
        "png_claims_100000x100000": ("bomb.png", png_claiming(100000, 100000), "more than the limit"),
        "png_claims_20000x20000": ("bomb2.png", png_claiming(20000, 20000), "more than the limit"),
    }
    out = {}
    for name, (fname, data, match) in files.items():
        (root / fname).write_bytes(data)
        out[name] = (root / fname, match)
    big = root / "big_8000x8000.png"      # a real, decodable 8000x8000 photo-sized PNG (compresses to ~200 kB)
    cv2.imwrite(str(big), np.zeros((8000, 8000, 3), np.uint8))
    out["real_8000x8000"] = (big, "8000x8000 (64,000,000 pixels), more than the limit of 8,388,608")
    out["_good"] = (root / "good.png", None)
    return out


@pytest.fixture
def run_cli(capfd):
    """run_cli(main, argv) -> (status, stdout, stderr) of a tool's main() in this process, with
    file-descriptor capture so C libraries' own stderr lines (libpng, libjpeg) are seen too."""
    def run(main, argv):
        capfd.readouterr()
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:            # a tool that bypassed friendly_main: caught as a failure below
            status = exc.code
        out, err = capfd.readouterr()
        return status, out, err
    return run


def assert_one_error_line(status, err, match=None):
    """The project's promise for bad input: exit status 2, exactly one stderr line `error: ...`."""
    lines = err.splitlines()
    assert status == 2, f"status {status}, stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr must be one error line, got: {err!r}"
    assert "Traceback" not in err
    if match:
        assert match in lines[0], f"{match!r} not in {lines[0]!r}"


def tree(path: Path) -> set:
    """Every path under `path` (hidden temporary files included): what a failed run must not change."""
    return {p.relative_to(path) for p in Path(path).rglob("*")} if Path(path).exists() else set()


@pytest.fixture
def one_error_line():
    return assert_one_error_line


@pytest.fixture
def file_tree():
    return tree
