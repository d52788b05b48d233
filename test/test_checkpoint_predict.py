"""Checkpoint round trip, clear errors on bad files, and the ecmnet-predict CLI."""
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from ecmnet_core.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint, make_metadata
from ecmnet_core.model import ECMNet
from ecmnet_core.predict import main as predict_main


def test_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(1)
    model = ECMNet(num_classes=5).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, make_metadata(5, input_size=(64, 64), val_miou=0.5))
    loaded, meta = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert meta["val_miou"] == 0.5 and len(meta["colors"]) == 5
    # plain weights_only load must work (no pickled classes inside)
    assert torch.load(path, weights_only=True)["format"] == "ecmnet-checkpoint"


def test_half_storage_is_smaller_and_close(tmp_path):
    model = ECMNet(num_classes=5).eval()
    full = save_checkpoint(tmp_path / "f.pt", model, make_metadata(5))
    half = save_checkpoint(tmp_path / "h.pt", model, make_metadata(5), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(half)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("content,match", [(b"not a checkpoint", "not a readable checkpoint"),
                                           (None, "not an ECMNet checkpoint")])
def test_bad_files_raise_checkpoint_error(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_no_partial_file_when_save_fails(tmp_path):
    model = ECMNet(num_classes=3)
    with pytest.raises(TypeError, match="metadata.bad holds a object"):
        save_checkpoint(tmp_path / "x.pt", model, {"bad": object()})
    assert not list(tmp_path.iterdir())


def test_predict_writes_mask_and_overlay(tmp_path, tiny_checkpoint):
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), img)
    cv2.imwrite(str(src / "b.jpg"), img)
    out = tmp_path / "out"
    assert predict_main([str(src), "--weights", str(tiny_checkpoint), "--out", str(out)]) == 0
    labels = cv2.imread(str(out / "a_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (50, 70) and labels.max() < 11
    color = cv2.imread(str(out / "a_mask.png"))
    assert color.shape == (50, 70, 3)
    assert (out / "b_overlay.png").is_file()


def test_predict_bad_input_is_one_clear_line(tmp_path, tiny_checkpoint):
    proc = subprocess.run([sys.executable, "-m", "ecmnet_core.predict", str(tmp_path / "nope.png"),
                           "--weights", str(tiny_checkpoint), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no such image or directory: {tmp_path / 'nope.png'}"
    proc = subprocess.run([sys.executable, "-m", "ecmnet_core.predict", str(tmp_path),
                           "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_git_commit_prefers_environment_and_rejects_non_shas(monkeypatch, tmp_path):
    import subprocess as sp

    from ecmnet_core import checkpoint

    monkeypatch.setenv("ECMNET_GIT_COMMIT", "0123abc")
    assert checkpoint.git_commit() == "0123abc"
    monkeypatch.delenv("ECMNET_GIT_COMMIT")
    fake = sp.CompletedProcess([], 128, stdout="HEAD\n", stderr="fatal: ambiguous argument 'HEAD'")
    monkeypatch.setattr(checkpoint.subprocess, "run", lambda *a, **k: fake)
    assert checkpoint.git_commit() == "unknown"
