"""The ecmnet-predict CLI: masks and overlays for a folder, one clear error line for bad input."""
import subprocess
import sys

import cv2
import numpy as np

from ecmnet_core.cli.predict import main as predict_main


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
    proc = subprocess.run([sys.executable, "-m", "ecmnet_core.cli.predict", str(tmp_path / "nope.png"),
                           "--weights", str(tiny_checkpoint), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no such image or directory: {tmp_path / 'nope.png'}"
    proc = subprocess.run([sys.executable, "-m", "ecmnet_core.cli.predict", str(tmp_path),
                           "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
