"""Training configuration: YAML file + defaults + `--set a.b=value` overrides, validated up front.

A run is fully described by the merged dict, which is stored in every checkpoint
(`metadata.train_config`) so a result can be traced to the exact recipe.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Iterable

import yaml

from ecmnet_core.cli.common import UserError

# Defaults = the paper's CamVid recipe; dataset YAMLs override what differs.
DEFAULTS: Dict[str, Any] = {
    "dataset": {
        "layout": "camvid",            # camvid | cityscapes | custom | pack
        "root": "../shared/datasets/camvid",
        "classes": None,               # custom layout: path to a classes YAML
        "name": None,                  # custom layout: dataset name stored in checkpoints
        "train_split": "train",
        "val_split": "val",
        "resize_to": None,             # [H, W]: resize every sample when the dataset mixes sizes
        "limit": None,                 # use only the first N samples of each split (smoke tests)
        "preload": "auto",             # auto | device | cpu | none  (device: uint8 tensors on the GPU)
        "workers": 4,                  # DataLoader workers when not preloaded
        "input_size": None,            # [H, W] recorded in checkpoints; default: first val image size
    },
    "model": {"ss2d_backend": "auto"},  # any ECMNetConfig field except num_classes
    "train": {
        "epochs": 1000,
        "batch_size": 8,               # per process (torchrun: total = nproc * batch_size)
        "crop_size": [360, 480],
        "scale_range": [0.5, 2.0],
        "hflip": True,
        "color_jitter": 0.0,           # 0 = off; e.g. 0.3 = brightness/contrast/saturation +-30 %
        "amp": "none",                 # bf16 | fp16 | none (only used on CUDA; see docs/training.md)
        "channels_last": False,
        "compile": False,
        "step": "auto",                # auto | graph | eager: auto = whole step in one CUDA graph where it can run
        "sync_bn": False,
        "seed": 0,
        "val_every": 10,               # epochs; the last epoch is always validated
        "checkpoint_every": 1,         # epochs between last.pt writes
        "max_minutes": None,           # stop cleanly after the epoch that would overrun this budget
        "progress": "auto",            # auto | on | off  (tqdm bars)
        "deterministic": False,        # cudnn deterministic (slower; for exact GPU resume)
        "ema_decay": 0.0,              # > 0: validate / select / ship an EMA of the weights (e.g. 0.9995)
    },
    "optim": {"name": "adam", "lr": 1.0e-3, "weight_decay": 2.0e-4, "momentum": 0.9, "nesterov": False,
              "betas": [0.9, 0.999], "fused": "auto"},     # fused: auto = single-kernel step on CUDA
    "schedule": {"name": "poly", "power": 0.9, "warmup_epochs": 5, "warmup_factor": 0.1},
    "loss": {"class_weights": "enet", "enet_c": 1.02,    # enet | none | [w0, w1, ...]
             "ohem_thresh": None,      # e.g. 0.7: train on pixels whose true-class probability is below it
             "ohem_min_kept": 100000},  # ... but at least this many of the hardest pixels per process batch
    "eval": {"batch_size": 4, "scales": [1.0], "flip": False},
    "output": {"dir": "runs/camvid"},
}

LAYOUTS = ("camvid", "cityscapes", "custom", "pack")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line: what is wrong and where (its own text spans several)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def deep_merge(base: dict, update: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        where = f"{path}{key}"
        if key not in out:
            if path.startswith("model."):
                out[key] = value
                continue
            raise UserError(f"unknown config key {where!r}; known keys under {path or 'top level'}: "
                            f"{', '.join(sorted(out))}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = deep_merge(out[key], value, f"{where}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple:
    if "=" not in text:
        raise UserError(f"--set expects key=value (e.g. optim.lr=0.01), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"--set {key}: cannot parse value {raw!r} ({yaml_problem(exc)})") from None
    return key.strip(), value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    for text in overrides or ():
        key, value = parse_override(text)
        nested: Dict[str, Any] = {}
        cur = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        cfg = deep_merge(cfg, nested)
    return cfg


def load_config(path=None, overrides: Iterable[str] = ()) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path} is not valid YAML: {yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} must hold a mapping of sections (dataset, train, optim, ...)")
        cfg = deep_merge(cfg, data)
    cfg = apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def _pair(value, name):
    if value is None:
        return None
    if isinstance(value, int):
        value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(int(v) > 0 for v in value)):
        raise UserError(f"{name} must be [height, width] with positive ints, got {value!r}")
    return [int(v) for v in value]


def validate(cfg: dict) -> None:
    d, t, o = cfg["dataset"], cfg["train"], cfg["optim"]
    if d["layout"] not in LAYOUTS:
        raise UserError(f"dataset.layout must be one of {', '.join(LAYOUTS)}, got {d['layout']!r}")
    if d["preload"] not in ("auto", "device", "cpu", "none"):
        raise UserError(f"dataset.preload must be auto, device, cpu or none, got {d['preload']!r}")
    t["crop_size"] = _pair(t["crop_size"], "train.crop_size")
    d["resize_to"] = _pair(d["resize_to"], "dataset.resize_to")
    d["input_size"] = _pair(d["input_size"], "dataset.input_size")
    if d["limit"] is not None and int(d["limit"]) < 1:
        raise UserError(f"dataset.limit must be >= 1, got {d['limit']}")
    lo, hi = (float(v) for v in t["scale_range"])
    if not 0 < lo <= hi:
        raise UserError(f"train.scale_range must be [min, max] with 0 < min <= max, got {t['scale_range']}")
    if t["step"] not in ("auto", "graph", "eager"):
        raise UserError(f"train.step must be auto, graph or eager, got {t['step']!r}")
    if t["amp"] not in ("bf16", "fp16", "none", None, False):
        raise UserError(f"train.amp must be bf16, fp16 or none, got {t['amp']!r}")
    for key in ("epochs", "batch_size", "val_every", "checkpoint_every"):
        if int(t[key]) < 1:
            raise UserError(f"train.{key} must be >= 1, got {t[key]}")
    if o["name"] not in ("sgd", "adam", "adamw"):
        raise UserError(f"optim.name must be sgd, adam or adamw, got {o['name']!r}")
    if float(o["lr"]) <= 0:
        raise UserError(f"optim.lr must be > 0, got {o['lr']}")
    if cfg["schedule"]["name"] not in ("poly", "constant"):
        raise UserError(f"schedule.name must be poly or constant, got {cfg['schedule']['name']!r}")
    cw = cfg["loss"]["class_weights"]
    if not (cw in ("enet", "none", None) or isinstance(cw, list)):
        raise UserError(f"loss.class_weights must be enet, none or a list of numbers, got {cw!r}")
    ema = t["ema_decay"]
    if not isinstance(ema, (int, float)) or isinstance(ema, bool) or not 0.0 <= float(ema) < 1.0:
        raise UserError(f"train.ema_decay must be a number in [0, 1) (0 = off), got {ema!r}")
    lc = cfg["loss"]
    thresh, kept = lc["ohem_thresh"], lc["ohem_min_kept"]
    if thresh is not None and (not isinstance(thresh, (int, float)) or isinstance(thresh, bool)
                               or not 0.0 < float(thresh) <= 1.0):
        raise UserError(f"loss.ohem_thresh must be a probability in (0, 1] or null (off), got {thresh!r}")
    if not isinstance(kept, int) or isinstance(kept, bool) or kept < 1:
        raise UserError(f"loss.ohem_min_kept must be an integer >= 1, got {kept!r}")
    if "num_classes" in cfg["model"]:
        raise UserError("model.num_classes comes from the dataset; do not set it")
    if not cfg["eval"]["scales"]:
        raise UserError("eval.scales must list at least one scale")


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
