"""Reading the user's images: a file or a folder of them, decoded to RGB uint8.

Why in the runtime: `ecmnet-predict` and `ecmnet-make-bag` (ecmnet_ros) read images the same way,
and neither should import the other's command-line module. Bad input raises UserError.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..utils.errors import UserError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(target: Path):
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) in {target}")
        return files
    if target.is_file():
        return [target]
    raise UserError(f"no such image or directory: {target}")


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
