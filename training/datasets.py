"""Segmentation datasets in the layouts users have on disk, all yielding one canonical form.

Every sample is (image uint8 3xHxW RGB, label uint8 HxW) with train ids 0..C-1 and 255 = ignore,
whatever the on-disk encoding (CamVid void 11, Cityscapes labelIds, a custom ignore value).
Layouts:
  camvid      root/{split}/*.png + root/{split}annot/*.png            (SegNet CamVid; 11 = void)
  cityscapes  root/leftImg8bit/{split}/<city>/*_leftImg8bit.png
              + root/gtFine/{split}/<city>/*_gtFine_labelIds.png       (labelIds -> 19 trainIds)
  custom      root/images/{split}/* + root/masks/{split}/*.png, matched by file stem,
              class names / colours / ignore value from a classes YAML
  pack        a tar written by `ecmnet-pack-data` (labels already canonical)
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import cv2
import numpy as np
import torch
import yaml

from ecmnet_core.cli.common import UserError
from ecmnet_core.palettes import CAMVID_CLASSES, CAMVID_COLORS, CITYSCAPES_CLASSES, CITYSCAPES_COLORS, \
    default_palette

from .cityscapes_labels import label_id_to_train_id_lut

IGNORE = 255
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class DatasetError(UserError):
    """A dataset problem the user must fix (missing folder, unpaired image, bad label values)."""

    def __init__(self, msg: str):
        # DataLoader workers re-raise with the worker traceback folded into the message: keep the reason.
        if "Original Traceback" in msg and "DatasetError: " in msg:
            msg = msg.rsplit("DatasetError: ", 1)[1].strip()
        super().__init__(msg)


@dataclass
class DatasetInfo:
    name: str
    classes: List[str]
    colors: List[List[int]]
    ignore_index: int = IGNORE            # canonical value in the tensors we produce
    class_counts: Optional[List[int]] = None   # pixel histogram of the split, when known (packs)
    source_ignore: int = IGNORE           # ignore value in the on-disk masks (custom layout)
    mask_format: str = "index"            # custom layout: index (class ids) | color (RGB = class colour)
    ignore_colors: Optional[List[List[int]]] = None   # color masks: colours meaning "not labelled"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Item:
    name: str
    image: Callable[[], np.ndarray]      # -> HxWx3 uint8 RGB
    label: Callable[[], np.ndarray]      # -> HxW uint8 on-disk encoding
    where: str = ""                      # shown in error messages


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_label(path: Path) -> np.ndarray:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DatasetError(f"cannot read mask {path}")
    if lab.ndim == 3:
        raise DatasetError(f"mask {path} has {lab.shape[2]} channels; expected a single-channel "
                           f"class-index PNG")
    if lab.dtype != np.uint8:
        if lab.max(initial=0) > 255:
            raise DatasetError(f"mask {path} has values up to {lab.max()}; class indices must be <= 255")
        lab = lab.astype(np.uint8)
    return lab


def _files(folder: Path, suffix: str = "") -> dict:
    """stem -> path of the images under `folder` (recursive); pairing by stem needs unique stems."""
    out: dict = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and p.name.endswith(suffix):
            stem = p.name[: -len(suffix)] if suffix else p.stem
            if stem in out:
                raise DatasetError(f"{out[stem]} and {p} share the file stem {stem!r}; images and masks are "
                                   f"paired by stem, so stems must be unique within a split")
            out[stem] = p
    return out


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}")
    return path


def _pair(images: dict, labels: dict, img_dir: Path, lab_dir: Path) -> List[Item]:
    if not images:
        raise DatasetError(f"no images found in {img_dir}")
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DatasetError(f"{len(missing)} image(s) in {img_dir} have no mask in {lab_dir}, e.g. "
                           f"{images[missing[0]].name} (masks are matched by file stem)")
    return [Item(stem, (lambda p=images[stem]: _read_image(p)), (lambda p=labels[stem]: _read_label(p)),
                 where=f"{images[stem]} / {labels[stem]}") for stem in sorted(images)]


def camvid_items(root: Path, split: str) -> List[Item]:
    img_dir = _require_dir(root / split, f"CamVid {split} image")
    lab_dir = _require_dir(root / f"{split}annot", f"CamVid {split} label")
    return _pair(_files(img_dir), _files(lab_dir), img_dir, lab_dir)


def cityscapes_items(root: Path, split: str) -> List[Item]:
    img_dir = _require_dir(root / "leftImg8bit" / split, f"Cityscapes leftImg8bit/{split}")
    lab_dir = _require_dir(root / "gtFine" / split, f"Cityscapes gtFine/{split}")
    return _pair(_files(img_dir, "_leftImg8bit.png"), _files(lab_dir, "_gtFine_labelIds.png"), img_dir, lab_dir)


def custom_items(root: Path, split: str, info: Optional["DatasetInfo"] = None) -> List[Item]:
    img_dir = _require_dir(root / "images" / split, f"custom images/{split}")
    lab_dir = _require_dir(root / "masks" / split, f"custom masks/{split}")
    items = _pair(_files(img_dir), _files(lab_dir), img_dir, lab_dir)
    if info is not None and info.mask_format == "color":
        masks = _files(lab_dir)
        decode = _color_mask_decoder(info)
        for it in items:
            it.label = (lambda p=masks[it.name]: decode(p))
    return items


def _color_mask_decoder(info: "DatasetInfo"):
    """RGB masks whose pixels are class colours -> class indices (ignore colours -> source_ignore)."""
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(info.colors)}
    for r, g, b in info.ignore_colors or ():
        table[(r << 16) | (g << 8) | b] = info.source_ignore

    def decode(path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read mask {path}")
        code = (bgr[..., 2].astype(np.int32) << 16) | (bgr[..., 1].astype(np.int32) << 8) | bgr[..., 0]
        values, inverse = np.unique(code, return_inverse=True)
        mapped = np.array([table.get(int(v), -1) for v in values], dtype=np.int16)
        if (mapped < 0).any():
            bad = [[int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255] for v in values[mapped < 0][:4]]
            raise DatasetError(f"colour mask {path} has colours {bad} that are neither a class colour nor an "
                               f"ignore colour of the classes YAML")
        return mapped[inverse.reshape(code.shape)].astype(np.uint8)
    return decode


def load_classes_yaml(path) -> DatasetInfo:
    """names (required), colors (optional, [r, g, b] each), ignore_index (default 255)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"classes file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        from .config import yaml_problem

        raise DatasetError(f"{path} is not valid YAML: {yaml_problem(exc)}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if not names or not isinstance(names, list):
        raise DatasetError(f"{path} must define `names:` as a list of class names")
    if len(names) > 255:
        raise DatasetError(f"{path} defines {len(names)} classes; at most 255 are supported")
    colors = data.get("colors") or default_palette(len(names))
    if len(colors) != len(names) or not all(len(c) == 3 and all(0 <= int(v) <= 255 for v in c) for c in colors):
        raise DatasetError(f"{path}: `colors` must hold one [r, g, b] (0..255) per class ({len(names)})")
    ignore = int(data.get("ignore_index", IGNORE))
    if not 0 <= ignore <= 255:
        raise DatasetError(f"{path}: ignore_index must be in 0..255, got {ignore}")
    if ignore < len(names):
        raise DatasetError(f"{path}: ignore_index {ignore} collides with class {names[ignore]!r} "
                           f"(classes use 0..{len(names) - 1})")
    fmt = str(data.get("mask_format", "index"))
    if fmt not in ("index", "color"):
        raise DatasetError(f"{path}: mask_format must be index or color, got {fmt!r}")
    if fmt == "color" and not data.get("colors"):
        raise DatasetError(f"{path}: mask_format color needs `colors`, one [r, g, b] per class")
    if fmt == "color" and len({tuple(c) for c in colors}) != len(colors):
        raise DatasetError(f"{path}: class colours must be distinct for mask_format color")
    ignore_colors = data.get("ignore_colors") or []
    if not all(isinstance(c, list) and len(c) == 3 for c in ignore_colors):
        raise DatasetError(f"{path}: ignore_colors must be a list of [r, g, b]")
    return DatasetInfo("custom", [str(n) for n in names], [[int(v) for v in c] for c in colors],
                       source_ignore=ignore, mask_format=fmt,
                       ignore_colors=[[int(v) for v in c] for c in ignore_colors])


def lut_for(num_classes: int, source_ignore: int) -> np.ndarray:
    """int16 table: classes map to themselves, the source ignore value to 255, anything else to -1."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[source_ignore] = IGNORE
    return lut


class SegmentationDataset(torch.utils.data.Dataset):
    """Decodes one sample per call (DataLoader workers); `preload()` decodes all at once."""

    def __init__(self, items: Sequence[Item], info: DatasetInfo, lut: Optional[np.ndarray],
                 resize_to: Optional[Sequence[int]] = None, split: str = ""):
        self.items, self.info, self.lut = list(items), info, lut
        self.resize_to = tuple(resize_to) if resize_to else None
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def _map_label(self, lab: np.ndarray, item: Item) -> np.ndarray:
        if self.lut is None:
            return lab
        out = self.lut[lab]
        if (out < 0).any():
            bad = np.unique(lab[out < 0])
            allowed = [int(v) for v in np.flatnonzero(self.lut >= 0)]
            raise DatasetError(f"label values {bad[:8].tolist()} out of range in {item.where}; "
                               f"allowed: {_ranges(allowed)}")
        return out.astype(np.uint8)

    def load_label(self, i: int) -> np.ndarray:
        item = self.items[i]
        lab = self._map_label(item.label(), item)
        if self.resize_to:
            lab = cv2.resize(lab, self.resize_to[::-1], interpolation=cv2.INTER_NEAREST)
        return lab

    def load(self, i: int):
        item = self.items[i]
        img, lab = item.image(), item.label()
        if img.shape[:2] != lab.shape[:2]:
            raise DatasetError(f"image and mask sizes differ for {item.where}: image {img.shape[1]}x"
                               f"{img.shape[0]}, mask {lab.shape[1]}x{lab.shape[0]} (WxH)")
        lab = self._map_label(lab, item)
        if self.resize_to:
            h, w = self.resize_to
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        return img, lab

    def __getitem__(self, i: int):
        img, lab = self.load(i)
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), torch.from_numpy(lab)

    def preload(self, progress: bool = False):
        """All samples as (N,3,H,W) and (N,H,W) uint8 tensors; needs one common size (or resize_to)."""
        imgs, labs = [], []
        it = range(len(self))
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc=f"decode {self.split}", leave=False)
        for i in it:
            img, lab = self[i]
            if imgs and img.shape != imgs[0].shape:
                raise DatasetError(f"{self.items[i].where} is {img.shape[2]}x{img.shape[1]} but "
                                   f"{self.items[0].name} is {imgs[0].shape[2]}x{imgs[0].shape[1]}; "
                                   f"set dataset.resize_to: [H, W] to train on mixed sizes")
            imgs.append(img)
            labs.append(lab)
        return torch.stack(imgs), torch.stack(labs)


def _ranges(values: List[int]) -> str:
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}..{v}")
            start = None
    return ", ".join(out)


# ---------------------------------------------------------------- packs
PACK_FORMAT = "ecmnet-data-pack"


def read_pack(path) -> dict:
    """-> {"meta": dict, "<split>": [(name, image bytes, label bytes), ...]} from an ecmnet-pack-data tar."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data pack not found: {path}")
    try:
        tar = tarfile.open(path, "r")
    except tarfile.TarError as exc:
        raise DatasetError(f"{path} is not a data pack tar ({exc})") from None
    try:
        with tar:
            files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as exc:       # cut off or corrupt after the header
        raise DatasetError(f"{path} is a damaged data pack tar ({exc})") from None
    if "meta.json" not in files:
        raise DatasetError(f"{path} has no meta.json; write packs with ecmnet-pack-data")
    try:
        meta = json.loads(files["meta.json"])
    except ValueError as exc:
        raise DatasetError(f"{path}: meta.json is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != PACK_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DatasetError(f"{path} is not an ecmnet data pack (format {found!r})")
    problem = _pack_meta_problem(meta, files)
    if problem:
        raise DatasetError(f"{path}: meta.json {problem}; write packs with ecmnet-pack-data")
    out = {"meta": meta}
    for split, entries in meta["splits"].items():
        out[split] = [(e["name"], files[e["image"]], files[e["label"]]) for e in entries]
    return out


def _pack_meta_problem(meta: dict, files: dict) -> Optional[str]:
    """What is wrong with a pack's meta.json (the keys build_dataset reads), or None."""
    classes, colors = meta.get("classes"), meta.get("colors")
    if not isinstance(meta.get("dataset"), str):
        return "has no dataset name"
    if not isinstance(classes, list) or not 0 < len(classes) <= 255 or not all(isinstance(c, str) for c in classes):
        return "needs classes: a list of 1..255 class names"
    if not isinstance(colors, list) or len(colors) != len(classes) or not all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in colors):
        return f"needs colors: one [r, g, b] (0..255) per class ({len(classes)})"
    splits, counts = meta.get("splits"), meta.get("class_counts", {})
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        return "needs splits: a mapping of split name to a list of samples"
    for split, entries in splits.items():
        for e in entries:
            if not (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("name", "image", "label"))):
                return f"split {split!r} has a sample without name, image and label"
            missing = [e[k] for k in ("image", "label") if e[k] not in files]
            if missing:
                return f"names {missing[0]} (split {split!r}), which is not in the tar"
    if not isinstance(counts, dict) or not all(
            isinstance(v, list) and len(v) == len(classes) and all(isinstance(n, int) for n in v)
            for v in counts.values()):
        return f"class_counts must give {len(classes)} pixel counts per split"
    return None


def _decode(data: bytes, flags, name) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None:
        raise DatasetError(f"cannot decode {name} in the data pack")
    return arr


def pack_items(pack: dict, split: str, path) -> List[Item]:
    if split not in pack:
        raise DatasetError(f"data pack {path} has no split {split!r} (has {sorted(pack['meta']['splits'])})")

    def img(data=None, name=None):
        return cv2.cvtColor(_decode(data, cv2.IMREAD_COLOR, name), cv2.COLOR_BGR2RGB)

    return [Item(name, (lambda d=i, n=name: img(d, n)),
                 (lambda d=lb, n=name: _decode(d, cv2.IMREAD_UNCHANGED, n)), where=f"{path}:{split}/{name}")
            for name, i, lb in pack[split]]


_PACK_CACHE: dict = {}


def _split_names(split: str) -> List[str]:
    """'train+val' -> ['train', 'val']: the paper trains CamVid on train and val together."""
    names = [s.strip() for s in str(split).split("+")]
    if not all(names):
        raise DatasetError(f"bad split {split!r}: use a split name or names joined by '+' (train+val)")
    return names


def build_dataset(dcfg: dict, split: str) -> SegmentationDataset:
    """Dataset for `split` (or several joined by '+') from the `dataset:` config section."""
    layout = dcfg["layout"]
    splits = _split_names(split)
    root = Path(str(dcfg["root"])).expanduser()
    if layout == "pack":
        key = str(root.resolve())
        if key not in _PACK_CACHE:
            _PACK_CACHE.clear()
            _PACK_CACHE[key] = read_pack(root)
        pack = _PACK_CACHE[key]
        meta = pack["meta"]
        per_split = [meta.get("class_counts", {}).get(s) for s in splits]
        counts = None if any(c is None for c in per_split) else [sum(v) for v in zip(*per_split)]
        info = DatasetInfo(meta["dataset"], meta["classes"], meta["colors"], IGNORE, counts)
        if dcfg.get("limit"):
            info.class_counts = None      # histogram of the full split no longer applies
        items = [it for s in splits for it in pack_items(pack, s, root)]
        return SegmentationDataset(_limit(items, dcfg), info,
                                   lut_for(info.num_classes, IGNORE), dcfg.get("resize_to"), split)
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root} (set dataset.root or --data-root)")
    if layout == "camvid":
        info = DatasetInfo("camvid", list(CAMVID_CLASSES), [list(c) for c in CAMVID_COLORS])
        items, lut = [it for s in splits for it in camvid_items(root, s)], lut_for(11, 11)
    elif layout == "cityscapes":
        info = DatasetInfo("cityscapes", list(CITYSCAPES_CLASSES), [list(c) for c in CITYSCAPES_COLORS])
        items, lut = [it for s in splits for it in cityscapes_items(root, s)], label_id_to_train_id_lut()
    elif layout == "custom":
        classes = dcfg.get("classes")
        if not classes:
            candidate = root / "classes.yaml"
            if not candidate.is_file():
                raise DatasetError("custom layout needs dataset.classes: path to a classes YAML "
                                   f"(or {candidate})")
            classes = candidate
        info = load_classes_yaml(classes)
        items = [it for s in splits for it in custom_items(root, s, info)]
        lut = lut_for(info.num_classes, info.source_ignore)
        info.name = dcfg.get("name") or root.name
    else:
        raise DatasetError(f"unknown dataset layout {layout!r}")
    return SegmentationDataset(_limit(items, dcfg), info, lut, dcfg.get("resize_to"), split)


def _limit(items: List[Item], dcfg: dict) -> List[Item]:
    n = dcfg.get("limit")
    return items[: int(n)] if n else items
