"""Shared CLI plumbing: a user error prints one clear line and exits 2, never a traceback."""
from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Bad input from the user (missing file, wrong argument); message is shown as-is."""


def friendly_main(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .checkpoint import CheckpointError
        try:
            return fn(*args, **kwargs)
        except (UserError, CheckpointError, FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return wrapper
