"""Inference engine: uint8 image in, class-id mask (and optional confidence / colour) out.

Everything after the upload runs on the model's device: resize, normalise,
network, upsampling of logits, argmax and colourisation; only the results
travel back to the host.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_model

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class SegmentationResult:
    mask: np.ndarray                      # H x W uint8 class ids, input resolution
    confidence: Optional[np.ndarray] = None   # H x W float32 softmax max
    color: Optional[np.ndarray] = None        # H x W x 3 uint8 RGB


def resolve_device(device: str) -> torch.device:
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


class SegmentationEngine:
    def __init__(self, weights=None, device: str = "auto", ss2d_backend: str = "auto",
                 precision: str = "fp32", input_size: Optional[Sequence[int]] = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = resolve_device(device)
        if self.device.type == "cpu" and precision != "fp32":
            raise ValueError(f"precision {precision} needs a CUDA device; use fp32 on CPU")
        backend = ss2d_backend
        if backend == "auto":
            from .ss2d.auto import pick_auto
            backend = pick_auto(str(self.device))
        model, meta = load_model(weights, ss2d_backend=backend)
        self.metadata = meta
        self.dtype = PRECISIONS[precision]
        self.model = model.to(self.device, memory_format=torch.channels_last)
        if self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
        self.input_size = tuple(int(v) for v in input_size) if input_size else None
        self._mean = torch.tensor(meta["mean"], device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(meta["std"], device=self.device).view(1, 3, 1, 1) * 255.0
        self._palette = torch.tensor(meta["colors"], dtype=torch.uint8, device=self.device)

    @property
    def classes(self):
        return list(self.metadata["classes"])

    @property
    def colors(self):
        return [list(c) for c in self.metadata["colors"]]

    @property
    def num_classes(self) -> int:
        return len(self.metadata["classes"])

    def _to_batch(self, images) -> torch.Tensor:
        arrays = []
        for img in images:
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
                raise TypeError("images must be uint8 numpy arrays (H x W x 3 RGB or H x W gray)")
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
                raise ValueError(f"expected an H x W x 3 RGB image, got shape {img.shape}")
            arrays.append(img)
        if len({a.shape for a in arrays}) != 1:
            raise ValueError("all images in a batch must have the same size")
        host = torch.from_numpy(np.stack(arrays))
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)

    @torch.inference_mode()
    def logits(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 on device -> (B, C, H, W) float logits at the input size."""
        h, w = batch_uint8.shape[-2:]
        x = (batch_uint8.float() - self._mean) / self._std
        if self.input_size and (h, w) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        out = self.model(x).float()
        if out.shape[-2:] != (h, w):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out

    @torch.inference_mode()
    def infer_batch(self, images, confidence: bool = False, color: bool = False):
        logits = self.logits(self._to_batch(images))
        if confidence:
            conf, ids = torch.softmax(logits, dim=1).max(dim=1)
        else:
            ids = logits.argmax(dim=1)
        ids = ids.to(torch.uint8)
        col = self._palette[ids.long()] if color else None
        masks = ids.cpu().numpy()
        confs = conf.cpu().numpy() if confidence else None
        cols = col.cpu().numpy() if color else None
        return [SegmentationResult(masks[i], None if confs is None else confs[i], None if cols is None else cols[i])
                for i in range(len(masks))]

    def infer(self, image: np.ndarray, confidence: bool = False, color: bool = False) -> SegmentationResult:
        return self.infer_batch([image], confidence=confidence, color=color)[0]


def colorize(mask: np.ndarray, colors) -> np.ndarray:
    palette = np.asarray(colors, dtype=np.uint8)
    return palette[np.clip(mask, 0, len(palette) - 1)]


def overlay(image_rgb: np.ndarray, color_mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image_rgb.astype(np.float32) * (1 - alpha) + color_mask.astype(np.float32) * alpha).astype(np.uint8)
