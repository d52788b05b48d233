"""ENet class weighting w_c = 1 / ln(c + p_c) from the training-label pixel histogram (cached).

The histogram pass also validates every training label (values out of range fail here, before
any GPU time is spent). Cache: $ECMNET_CACHE or ~/.cache/ecmnet, keyed by layout, root, split,
file names and class count, so a changed dataset is recounted.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ecmnet_core.utils.atomic import atomic_write_text
from ecmnet_core.utils.paths import cache_dir


def enet_weights(counts, c: float = 1.02) -> List[float]:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("cannot compute class weights: the training labels hold no labelled pixels")
    p = counts / total
    return [float(w) for w in 1.0 / np.log(c + p)]


def label_histogram(labels: torch.Tensor, num_classes: int) -> List[int]:
    """Pixel count per class of a uint8 label tensor (ignore / out-of-range values not counted)."""
    flat = labels.reshape(-1).to(torch.int64)
    hist = torch.bincount(flat, minlength=256)[:num_classes]
    return [int(v) for v in hist.cpu()]


def _cache_dir() -> Path:
    return cache_dir("class_counts")


def dataset_key(dataset) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([dataset.info.name, dataset.split, dataset.info.num_classes,
                         list(dataset.resize_to or ()), [it.where for it in dataset.items]]).encode())
    return h.hexdigest()[:20]


def class_counts(dataset, preloaded_labels: Optional[torch.Tensor] = None, progress: bool = False) -> List[int]:
    """Histogram of the dataset's training labels: pack metadata, cache, preloaded tensor or a pass over files."""
    if dataset.info.class_counts:
        return list(dataset.info.class_counts)
    n = dataset.info.num_classes
    if preloaded_labels is not None:
        return label_histogram(preloaded_labels, n)
    path = _cache_dir() / f"{dataset_key(dataset)}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if len(cached["counts"]) == n:
                return cached["counts"]
        except (ValueError, KeyError):
            pass
    total = np.zeros(n, dtype=np.int64)
    it = range(len(dataset))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="class histogram", leave=False)
    for i in it:
        lab = dataset.load_label(i)
        total += np.bincount(lab.reshape(-1), minlength=256)[:n]
    counts = [int(v) for v in total]
    try:
        atomic_write_text(path, json.dumps({"dataset": dataset.info.name, "split": dataset.split,
                                            "counts": counts}))
    except OSError:
        pass  # read-only home: recount next time
    return counts
