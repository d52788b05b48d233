"""Shared CLI plumbing: a user error prints one clear line and exits 2, never a traceback."""
from __future__ import annotations

import argparse
import functools
import sys

from ..utils.errors import UserError

__all__ = ["UserError", "friendly_main", "parse_size"]      # UserError: the tools' one import point


def parse_size(text: str):
    """argparse type for a network input size 'HxW' (each side >= 16)."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 360x480 (HxW), got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return h, w


def friendly_main(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..runtime.checkpoint import CheckpointError
        try:
            return fn(*args, **kwargs)
        except (UserError, CheckpointError, FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return wrapper
