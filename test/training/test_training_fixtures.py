"""Tiny on-disk datasets in each supported layout, for the training / dataset tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"


def _blocky_scene(rng, h, w, num_classes):
    """A label map of coloured rectangles and an image whose colour encodes the class (learnable)."""
    lab = np.zeros((h, w), np.uint8)
    for _ in range(6):
        c = rng.integers(0, num_classes)
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        lab[y0:y0 + rng.integers(4, h // 2 + 5), x0:x0 + rng.integers(4, w // 2 + 5)] = c
    palette = (np.arange(num_classes)[:, None] * np.array([[70, 130, 200]]) % 256).astype(np.uint8)
    img = palette[lab] + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    return img, lab


def write_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), arr)


def make_camvid(root: Path, n_train=4, n_val=2, size=(48, 64)) -> Path:
    """Real CamVid frames downscaled when the shared copy exists, else synthetic ones (label 11 = void)."""
    h, w = size
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        names = sorted(p.name for p in (CAMVID / split).glob("*.png"))[:n] if (CAMVID / split).is_dir() else []
        for i in range(n):
            if i < len(names):
                img = cv2.cvtColor(cv2.imread(str(CAMVID / split / names[i])), cv2.COLOR_BGR2RGB)
                lab = cv2.imread(str(CAMVID / f"{split}annot" / names[i]), cv2.IMREAD_UNCHANGED)
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
                name = names[i]
            else:
                img, lab = _blocky_scene(rng, h, w, 12)
                name = f"frame_{i:03d}.png"
            write_png(root / split / name, img)
            write_png(root / f"{split}annot" / name, lab)
    return root


CS_IDS = [7, 8, 11, 21, 23, 24, 26, 0, 4, 9]      # 7 evaluated ids + void (0, 4) + parking (9, ignored)


def make_cityscapes(root: Path, n_train=4, n_val=2, size=(32, 64)) -> Path:
    h, w = size
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            city = "aachen" if i % 2 == 0 else "bochum"
            stem = f"{city}_{i:06d}_000019"
            img, lab = _blocky_scene(rng, h, w, len(CS_IDS))
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", img)
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                      np.array(CS_IDS, np.uint8)[lab])
    return root


def make_custom(root: Path, n_train=4, n_val=2, size=(40, 56), ignore_index=9) -> Path:
    h, w = size
    rng = np.random.default_rng(2)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(
        "names: [road, lane_marking, curb, obstacle]\n"
        "colors: [[128, 64, 128], [255, 255, 255], [200, 200, 0], [220, 20, 60]]\n"
        f"ignore_index: {ignore_index}\n")
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            img, lab = _blocky_scene(rng, h, w, 5)
            lab[lab == 4] = ignore_index
            write_png(root / "images" / split / f"scene_{i:03d}.jpg", img)
            write_png(root / "masks" / split / f"scene_{i:03d}.png", lab)
    return root


def tiny_config(layout: str, root: Path, out: Path, **train) -> dict:
    """Small, fast, augmentation-free recipe on CPU (deterministic overfitting of a few images)."""
    from training.config import DEFAULTS, deep_merge, validate
    cfg = deep_merge(DEFAULTS, {
        "dataset": {"layout": layout, "root": str(root), "workers": 0},
        "model": {"ss2d_backend": "reference"},
        "train": {"epochs": 3, "batch_size": 2, "crop_size": [32, 32], "scale_range": [1.0, 1.0],
                  "hflip": False, "amp": "none", "val_every": 1, "progress": "off", **train},
        "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
        "schedule": {"warmup_epochs": 0},
        "eval": {"batch_size": 2},
        "output": {"dir": str(out)},
    })
    validate(cfg)
    return cfg
