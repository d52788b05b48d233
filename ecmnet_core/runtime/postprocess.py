"""Images for people from a mask: the palette lookup and the blend over the camera image.

Why apart from the engine: the engine colours masks on the GPU; these NumPy versions serve the
CLI (`ecmnet-predict`) and the ROS node's overlay topic, which get the mask back on the host.
"""
from __future__ import annotations

import numpy as np


def colorize(mask: np.ndarray, colors) -> np.ndarray:
    palette = np.asarray(colors, dtype=np.uint8)
    return palette[np.clip(mask, 0, len(palette) - 1)]


def overlay(image_rgb: np.ndarray, color_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image_rgb.astype(np.float32) * (1 - alpha) + color_mask.astype(np.float32) * alpha).astype(np.uint8)
