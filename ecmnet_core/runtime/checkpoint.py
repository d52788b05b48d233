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
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from ..model import ECMNet, ECMNetConfig
from ..ops.ss2d import BackendUnavailable
from ..palettes import IMAGENET_MEAN, IMAGENET_STD, default_palette
from ..utils.atomic import atomic_path

FORMAT = "ecmnet-checkpoint"
VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "ecmnet_camvid.pt"


MAX_CLASSES = 256          # masks are mono8 class ids
# model_config bounds: far above any real ECMNet, low enough that a lying config cannot make
# load_model allocate gigabytes before the weights are compared with it
_CONFIG_BOUNDS = {"stem": 1024, "widths": 1024, "dec_width": 1024, "ffm_dim": 1024, "d_state": 256,
                  "ssm_expand": 16, "enc_dilations": 256, "dec_dilations": 256}
_MAX_BLOCKS = 64


class CheckpointError(ValueError):
    """The file is missing, unreadable, not an ECMNet checkpoint, or its parts disagree."""


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


def _reason(exc: BaseException) -> str:
    """One short line from a torch.load failure (its weights-only errors span several paragraphs)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            rest = rest.split(" was not an allowed global")[0]
            lines = [f"the weights-only loader refused it: {rest}"]
            break
    text = lines[0] if lines else "no details"
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}"


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load the checkpoint dict with weights_only=True; CheckpointError (one line) when it is not one."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"{path} is not a readable checkpoint ({_reason(exc)})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ECMNet checkpoint (missing format tag {FORMAT!r})")
    version = blob.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path} has an invalid checkpoint version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version}, this ecmnet reads <= {VERSION}")
    for key in ("model_config", "state_dict", "metadata"):
        if key not in blob:
            raise CheckpointError(f"{path} has no {key!r} entry")
        if not isinstance(blob[key], dict):
            raise CheckpointError(f"{path}: {key!r} must be a mapping, got {type(blob[key]).__name__}")
    return blob


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_config(cfg: dict) -> ECMNetConfig:
    """model_config dict -> ECMNetConfig, every field an in-range value of the right kind."""
    try:
        config = ECMNetConfig.from_dict(cfg)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"model_config: {exc}") from None
    n = config.num_classes
    if not _is_int(n) or not 1 <= n <= MAX_CLASSES:
        raise CheckpointError(f"model_config num_classes must be an int in 1..{MAX_CLASSES} "
                              f"(masks are mono8), got {n!r}")
    for name, bound in _CONFIG_BOUNDS.items():
        value = getattr(config, name)
        if name in ("widths", "dec_dilations", "enc_dilations"):
            groups = value if name == "enc_dilations" else (value,)
            want = 3 if name in ("widths", "enc_dilations") else None
            if want is not None and len(value) != want:
                raise CheckpointError(f"model_config {name} needs {want} entries, got {len(value)}")
            flat = [v for g in groups for v in (g if isinstance(g, (tuple, list)) else [g])]
            if any(len(g) > _MAX_BLOCKS or not len(g) for g in groups if isinstance(g, (tuple, list))):
                raise CheckpointError(f"model_config {name}: 1..{_MAX_BLOCKS} blocks per stage, got {value!r}")
        else:
            flat = [value]
        if not all(_is_int(v) and 1 <= v <= bound for v in flat):
            raise CheckpointError(f"model_config {name} must hold ints in 1..{bound}, got {value!r}")
    if not isinstance(config.ss2d_backend, str):
        raise CheckpointError(f"model_config ss2d_backend must be a string, got {config.ss2d_backend!r}")
    return config


def check_metadata(meta, num_classes: int, where: str = "metadata") -> dict:
    """The metadata the engine, the node and the tools read: names and colours for every class the
    model predicts, mean/std per channel, optional ignore_index and input_size. Returns it unchanged."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where} must be a mapping, got {type(meta).__name__}")
    classes, colors = meta.get("classes"), meta.get("colors")
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{where} classes must be a list of class names, got {_short(classes)}")
    if len(classes) != num_classes:
        raise CheckpointError(f"{where} names {len(classes)} classes but the model predicts {num_classes}")
    if not isinstance(colors, (list, tuple)) or len(colors) != num_classes:
        got = len(colors) if isinstance(colors, (list, tuple)) else _short(colors)
        raise CheckpointError(f"{where} needs {num_classes} colours (one per class), got {got}")
    for i, c in enumerate(colors):
        if not (isinstance(c, (list, tuple)) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)):
            raise CheckpointError(f"{where} colour {i} must be [r, g, b] with ints 0..255, got {_short(c)}")
    for key in ("mean", "std"):
        v = meta.get(key)
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) for x in v)):
            raise CheckpointError(f"{where} {key} must be 3 finite numbers (R, G, B), got {_short(v)}")
    if not all(x > 0 for x in meta["std"]):
        raise CheckpointError(f"{where} std must be > 0, got {meta['std']}")
    if meta.get("ignore_index") is not None and not _is_int(meta["ignore_index"]):
        raise CheckpointError(f"{where} ignore_index must be an int, got {_short(meta['ignore_index'])}")
    size = meta.get("input_size")
    if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2
                                 and all(_is_int(v) and v >= 16 for v in size)):
        raise CheckpointError(f"{where} input_size must be [H, W] with ints >= 16, got {_short(size)}")
    return meta


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_state(state: dict, model: ECMNet, path) -> dict:
    """Same keys and shapes as the model model_config describes, finite floating values."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{path}: state_dict does not match model_config: missing {missing[:3]}"
                              f"{' ...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                              f"{' ...' if len(unexpected) > 3 else ''}")
    out = {}
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{path}: state_dict {key} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            hint = (f" (model_config says {model.num_classes} classes)"
                    if key.startswith("classifier.") else "")
            raise CheckpointError(f"{path}: state_dict {key} has shape {list(got.shape)} but model_config "
                                  f"describes {list(want.shape)}{hint}")
        if got.is_floating_point():
            got = got.float()
            if not bool(torch.isfinite(got).all()):
                raise CheckpointError(f"{path}: state_dict {key} holds NaN or infinite values")
        elif want.is_floating_point():
            raise CheckpointError(f"{path}: state_dict {key} is {got.dtype}, expected floating point")
        out[key] = got
    return out


def load_model(path=None, map_location="cpu", ss2d_backend: Optional[str] = None) -> Tuple[ECMNet, dict]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, metadata).

    Every part is checked against the others first (model_config, state_dict shapes, metadata class
    count), so a checkpoint whose parts disagree fails here with one CheckpointError line, in every
    tool and in the node, instead of deep inside the engine.
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    if path == DEFAULT_WEIGHTS and not path.is_file():
        raise CheckpointError(f"no default weights shipped at {path}; pass a checkpoint with --weights")
    blob = read_checkpoint(path, map_location)
    try:
        cfg = check_config(blob["model_config"])
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if ss2d_backend:
        cfg.ss2d_backend = ss2d_backend
    try:
        model = ECMNet(cfg)
    except BackendUnavailable as exc:          # a RuntimeError; it is the user's choice of backend
        raise ValueError(f"SS2D backend {cfg.ss2d_backend!r} cannot run here: {exc}") from None
    state = _check_state(blob["state_dict"], model, path)
    try:
        meta = check_metadata(blob["metadata"], cfg.num_classes)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model.load_state_dict(state)
    model.eval()
    return model, meta
