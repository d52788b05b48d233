"""Where ecmnet keeps what it computes once and reuses: one cache root, one sub-folder or file per kind.

Why one root: a robot's image or a CI runner sets one variable ($ECMNET_CACHE, default
~/.cache/ecmnet) to move or isolate every cache (kernel tuning choices, TensorRT engines, class
pixel counts); the specific variables (ECMNET_KERNEL_CACHE, ECMNET_TRT_CACHE) still override
their own kind. Read at call time, so a test's monkeypatch.setenv applies. Table: docs/env.md.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$ECMNET_CACHE, else ~/.cache/ecmnet."""
    env = os.environ.get("ECMNET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ecmnet"


def cache_dir(kind: str) -> Path:
    """The cache of one kind ("tensorrt", "class_counts", ...) under cache_root()."""
    return cache_root() / kind
