"""Checkpoint format: model config + weights + metadata, loadable with weights_only=True.

Layout of the saved dict (plain containers and tensors only):
    format: "ecmnet-checkpoint", version: 1
    model_config: ECMNetConfig.to_dict()
    state_dict: model weights
    metadata: classes, colors, ignore_index, input_size [H, W], mean, std, and
              free-form provenance (dataset, train_config, val_miou, git_commit, ...)
    train_state: optional (optimizer, scheduler, scaler, RNG, epoch) for resume
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..model import ECMNet, ECMNetConfig
from ..palettes import IMAGENET_MEAN, IMAGENET_STD, default_palette
from ..utils.atomic import atomic_path

FORMAT = "ecmnet-checkpoint"
VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "ecmnet_camvid.pt"


class CheckpointError(ValueError):
    """The file is missing, unreadable or not an ECMNet checkpoint."""


def git_commit() -> str:
    """$ECMNET_GIT_COMMIT (for copies of the tree without usable git history), else `git rev-parse`."""
    env = os.environ.get("ECMNET_GIT_COMMIT", "").strip()
    if env:
        return env
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = proc.stdout.strip()
    # a tree without commits prints "HEAD" and fails: only accept a real object name
    return sha if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else "unknown"


def make_metadata(num_classes: int, classes=None, colors=None, ignore_index: int = 255,
                  input_size=(360, 480), mean=None, std=None, **extra) -> Dict[str, Any]:
    classes = list(classes) if classes else [f"class_{i}" for i in range(num_classes)]
    colors = [list(map(int, c)) for c in colors] if colors else default_palette(num_classes)
    if len(classes) != num_classes or len(colors) != num_classes:
        raise ValueError(f"metadata needs {num_classes} class names and colours, got "
                         f"{len(classes)} names and {len(colors)} colours")
    meta = {
        "classes": classes, "colors": colors, "ignore_index": int(ignore_index),
        "input_size": [int(input_size[0]), int(input_size[1])],
        "mean": list(mean or IMAGENET_MEAN), "std": list(std or IMAGENET_STD),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


def _check_plain(value, where="metadata"):
    """Reject objects that torch.load(weights_only=True) could not read back."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} key {k!r} must be a string or int")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool, torch.Tensor))):
        raise TypeError(f"{where} holds a {type(value).__name__}; checkpoints store only tensors and "
                        "plain containers so they load with weights_only=True")


def save_checkpoint(path, model: ECMNet, metadata: Dict[str, Any], train_state: Optional[dict] = None,
                    half: bool = False) -> Path:
    """Write atomically. `half=True` stores floating weights as fp16 (shipping size)."""
    _check_plain(metadata)
    if train_state is not None:
        _check_plain(train_state, "train_state")
    model = getattr(model, "module", model)       # unwrap DDP / compile
    model = getattr(model, "_orig_mod", model)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "version": VERSION, "model_config": model.config.to_dict(),
            "state_dict": state, "metadata": metadata}
    if train_state is not None:
        blob["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return Path(path)


def read_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ECMNet checkpoint (missing format tag {FORMAT!r})")
    if blob.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {blob['version']}, this ecmnet reads <= {VERSION}")
    return blob


def load_model(path=None, map_location="cpu", ss2d_backend: Optional[str] = None) -> Tuple[ECMNet, dict]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, metadata)."""
    path = Path(path) if path else DEFAULT_WEIGHTS
    if path == DEFAULT_WEIGHTS and not path.is_file():
        raise CheckpointError(f"no default weights shipped at {path}; pass a checkpoint with --weights")
    blob = read_checkpoint(path, map_location)
    cfg = ECMNetConfig.from_dict(blob["model_config"])
    if ss2d_backend:
        cfg.ss2d_backend = ss2d_backend
    model = ECMNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the model it describes: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    model.eval()
    return model, blob["metadata"]
