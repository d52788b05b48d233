"""The shipped CamVid model: small, self-describing, and actually segments CamVid frames."""
import cv2
import numpy as np
import torch

from ecmnet_core.runtime.checkpoint import DEFAULT_WEIGHTS, read_checkpoint
from ecmnet_core.runtime.engine import SegmentationEngine
from ecmnet_core.palettes import CAMVID_CLASSES


def test_shipped_weights_are_small_and_carry_metadata():
    assert DEFAULT_WEIGHTS.stat().st_size < 5e6
    blob = read_checkpoint(DEFAULT_WEIGHTS)
    meta = blob["metadata"]
    assert meta["classes"] == CAMVID_CLASSES and len(meta["colors"]) == 11
    assert meta["input_size"] == [360, 480] and len(meta["mean"]) == len(meta["std"]) == 3
    assert meta["val_miou"] > 0.6 and set(meta["val_per_class_iou"]) == set(CAMVID_CLASSES)
    assert "train_config" in meta and len(meta["git_commit"]) == 40
    assert "train_state" not in blob                      # no optimizer state in the shipped file
    assert all(v.dtype != torch.float32 for v in blob["state_dict"].values())


def test_default_engine_segments_real_camvid_frames(camvid_root):
    engine = SegmentationEngine(device="cpu", ss2d_backend="reference")   # default = shipped weights
    names = sorted((camvid_root / "val").glob("*.png"))[::50][:2]
    correct = total = 0
    for path in names:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        label = cv2.imread(str(camvid_root / "valannot" / path.name), cv2.IMREAD_UNCHANGED)
        mask = engine.infer(rgb).mask
        valid = label != 11
        correct += int((mask[valid] == label[valid]).sum())
        total += int(valid.sum())
    # a random-init model scores about 1/11; the trained one about 0.92 pixel accuracy on val
    assert correct / total > 0.8, correct / total
    assert np.unique(mask).size >= 4
