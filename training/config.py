"""Training configuration: YAML file + defaults + `--set a.b=value` overrides, validated up front.

A run is fully described by the merged dict, which is stored in every checkpoint
(`metadata.train_config`) so a result can be traced to the exact recipe.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Dict, Iterable

import yaml

from ecmnet_core.cli.common import UserError
from ecmnet_core.runtime.checkpoint import CheckpointError, check_config

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
    """base with update's keys replaced; a section (a mapping in base) must stay a mapping (null = no
    change), so a stray `train: 5` is one clear error rather than a crash in validate()."""
    if update is None:
        update = {}
    if not isinstance(update, dict):
        raise UserError(f"{path.rstrip('.') or 'the config'} must be a mapping of keys, got {update!r}")
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in out:
            if path.startswith("model."):
                out[key] = value
                continue
            raise UserError(f"unknown config key {where!r}; known keys under {path or 'top level'}: "
                            f"{', '.join(sorted(out))}")
        if isinstance(out[key], dict):
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


def _as_float(value):
    """A finite float from a number or a numeric string (PyYAML reads 1e-3, without a dot, as a
    string), else None; bools are not numbers here."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _as_int(value):
    """An int from an int, an integral float (360.0) or a digit string, else None (bools included)."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _integer(section: dict, key: str, where: str, lo: int, hi: int = None, optional: bool = False) -> None:
    """section[key] as an int in [lo, hi] (integral floats and digit strings accepted), in place."""
    value = section[key]
    if value is None and optional:
        return
    v = _as_int(value)
    if v is None or v < lo or (hi is not None and v > hi):
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise UserError(f"{where} must be an integer {bounds}{' or null' if optional else ''}, got {value!r}")
    section[key] = v


def _number(section: dict, key: str, where: str, lo=None, hi=None, lo_open=False, hi_open=False,
            optional: bool = False) -> None:
    """section[key] as a finite float in the range, in place. Strings are parsed: PyYAML reads 1e-3
    (no dot) as a string."""
    value = section[key]
    if value is None and optional:
        return
    v = _as_float(value)
    ok = v is not None
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        parts = ([f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []) + \
                ([f"{'<' if hi_open else '<='} {hi}"] if hi is not None else [])
        raise UserError(f"{where} must be a finite number{' ' + ' and '.join(parts) if parts else ''}"
                        f"{' or null' if optional else ''}, got {value!r}")
    section[key] = v if isinstance(value, str) else value


def _boolean(section: dict, key: str, where: str) -> None:
    if not isinstance(section[key], bool):
        raise UserError(f"{where} must be true or false, got {section[key]!r}")


def _text(section: dict, key: str, where: str, optional: bool = False) -> None:
    value = section[key]
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where} must be a non-empty string{' or null' if optional else ''}, got {value!r}")


def _pair(value, name, minimum: int = 1):
    if value is None:
        return None
    if _as_int(value) is not None and not isinstance(value, str):
        value = [value, value]
    sides = [_as_int(v) for v in value] if isinstance(value, (list, tuple)) and len(value) == 2 else []
    if not sides or not all(v is not None and v >= minimum for v in sides):
        raise UserError(f"{name} must be [height, width] with ints >= {minimum}, got {value!r}")
    return sides


def _numbers(value, where: str, lo: float, hi: float = None, count: int = None) -> list:
    """A list of finite numbers in [lo, hi] (count of them if given)."""
    ok = isinstance(value, (list, tuple)) and (len(value) == count if count else len(value) > 0)
    numbers = [_as_float(v) for v in value] if ok else []
    if not ok or not all(v is not None and v >= lo and (hi is None or v <= hi) for v in numbers):
        what = f"{count} numbers" if count else "a non-empty list of numbers"
        raise UserError(f"{where} must be {what} in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}")
    return numbers


def validate(cfg: dict) -> None:
    """Every key of the merged config has the right type and range (normalised in place); a wrong
    value is one UserError naming the key, before anything is read or written."""
    for name, section in cfg.items():
        if not isinstance(section, dict):
            raise UserError(f"{name} must be a mapping of keys, got {section!r}")
    d, t, o = cfg["dataset"], cfg["train"], cfg["optim"]
    if d["layout"] not in LAYOUTS:
        raise UserError(f"dataset.layout must be one of {', '.join(LAYOUTS)}, got {d['layout']!r}")
    if d["preload"] not in ("auto", "device", "cpu", "none"):
        raise UserError(f"dataset.preload must be auto, device, cpu or none, got {d['preload']!r}")
    validate_dataset(d)
    t["crop_size"] = _pair(t["crop_size"], "train.crop_size", minimum=16)
    if t["crop_size"] is None:
        raise UserError("train.crop_size must be [height, width] with ints >= 16, got None")
    lo, hi = _numbers(t["scale_range"], "train.scale_range", 0.0, count=2)
    if not 0 < lo <= hi:
        raise UserError(f"train.scale_range must be [min, max] with 0 < min <= max, got {t['scale_range']}")
    t["scale_range"] = [lo, hi]
    if t["step"] not in ("auto", "graph", "eager"):
        raise UserError(f"train.step must be auto, graph or eager, got {t['step']!r}")
    if t["amp"] not in ("bf16", "fp16", "none", None, False):
        raise UserError(f"train.amp must be bf16, fp16 or none, got {t['amp']!r}")
    for key in ("epochs", "batch_size", "val_every", "checkpoint_every"):
        _integer(t, key, f"train.{key}", 1)
    _integer(t, "seed", "train.seed", 0, 2**32 - 1)
    for key in ("hflip", "channels_last", "compile", "sync_bn", "deterministic"):
        _boolean(t, key, f"train.{key}")
    _number(t, "color_jitter", "train.color_jitter", 0.0, 1.0)
    _number(t, "max_minutes", "train.max_minutes", 0.0, optional=True)
    if t["progress"] not in ("auto", "on", "off", True, False, None):
        raise UserError(f"train.progress must be auto, on or off, got {t['progress']!r}")
    if o["name"] not in ("sgd", "adam", "adamw"):
        raise UserError(f"optim.name must be sgd, adam or adamw, got {o['name']!r}")
    _number(o, "lr", "optim.lr", 0.0, lo_open=True)
    _number(o, "weight_decay", "optim.weight_decay", 0.0)
    _number(o, "momentum", "optim.momentum", 0.0, 1.0)
    _boolean(o, "nesterov", "optim.nesterov")
    o["betas"] = _numbers(o["betas"], "optim.betas", 0.0, 1.0, count=2)
    if o["fused"] not in ("auto", True, False):
        raise UserError(f"optim.fused must be auto, true or false, got {o['fused']!r}")
    s = cfg["schedule"]
    if s["name"] not in ("poly", "constant"):
        raise UserError(f"schedule.name must be poly or constant, got {s['name']!r}")
    _number(s, "power", "schedule.power", 0.0)
    _number(s, "warmup_epochs", "schedule.warmup_epochs", 0.0)
    _number(s, "warmup_factor", "schedule.warmup_factor", 0.0, 1.0)
    cw = cfg["loss"]["class_weights"]
    if not (cw in ("enet", "none", None) or isinstance(cw, list)):
        raise UserError(f"loss.class_weights must be enet, none or a list of numbers, got {cw!r}")
    if isinstance(cw, list):
        cfg["loss"]["class_weights"] = _numbers(cw, "loss.class_weights", 0.0)
    _number(cfg["loss"], "enet_c", "loss.enet_c", 1.0, lo_open=True)
    _number(t, "ema_decay", "train.ema_decay", 0.0, 1.0, hi_open=True)             # 0 = off
    _number(cfg["loss"], "ohem_thresh", "loss.ohem_thresh", 0.0, 1.0, lo_open=True, optional=True)
    _integer(cfg["loss"], "ohem_min_kept", "loss.ohem_min_kept", 1)
    if "num_classes" in cfg["model"]:
        raise UserError("model.num_classes comes from the dataset; do not set it")
    try:
        check_config({**cfg["model"], "num_classes": 1})
    except CheckpointError as exc:
        raise UserError(f"model: {str(exc).replace('model_config', '').strip(' :')}") from None
    e = cfg["eval"]
    _integer(e, "batch_size", "eval.batch_size", 1)
    if not e["scales"]:
        raise UserError("eval.scales must list at least one scale")
    e["scales"] = _numbers(e["scales"], "eval.scales", 0.1, 4.0)
    _boolean(e, "flip", "eval.flip")
    _text(cfg["output"], "dir", "output.dir")


def validate_dataset(d: dict) -> None:
    """The dataset section's keys (ecmnet-eval checks a checkpoint's stored recipe with it too)."""
    _text(d, "root", "dataset.root")
    for key in ("classes", "name"):
        _text(d, key, f"dataset.{key}", optional=True)
    _text(d, "train_split", "dataset.train_split")
    if d["val_split"] is not None and not isinstance(d["val_split"], str):
        raise UserError(f"dataset.val_split must be a string or null, got {d['val_split']!r}")
    d["resize_to"] = _pair(d["resize_to"], "dataset.resize_to")
    d["input_size"] = _pair(d["input_size"], "dataset.input_size")
    _integer(d, "limit", "dataset.limit", 1, optional=True)
    _integer(d, "workers", "dataset.workers", 0, 256)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
