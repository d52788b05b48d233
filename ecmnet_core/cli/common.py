"""Shared CLI plumbing: a user error prints one clear line and exits 2, never a traceback.

Every console script (ecmnet-predict/-export/-flops, ecmnet-make-bag/-bag-eval, ecmnet-train/-eval/
-pack-data) builds its parser from `ArgumentParser` below and wraps `main` in `friendly_main`, so
bad arguments, bad files and bad values all end the same way: `error: <what is wrong>`, status 2.
The argparse `type=` helpers reject nonsense numbers at parse time.
"""
from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from pathlib import Path

from ..utils.errors import UserError

__all__ = ["ArgumentParser", "UsageError", "UserError", "friendly_main", "parse_size", "parse_device", "int_range",
           "float_range", "parse_max_pixels", "path_arg", "weights_arg", "check_output_dir", "check_output_file", "one_line"]


def one_line(text) -> str:
    """A message on one line (multi-line library errors would break the one-line promise)."""
    return " ".join(str(text).split())


class UsageError(UserError):
    """A command line argparse rejected; friendly_main prints it as the one `error:` line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one `error:` line and exit status 2 (no usage block).

    error() raises UsageError instead of printing usage and exiting, so `main(argv)` returns 2 when
    called in-process (tests, other tools) exactly as the console script exits 2.
    """

    def error(self, message):
        raise UsageError(f"{one_line(message)} (see {self.prog} --help)")


def parse_size(text: str):
    """argparse type for a network input size 'HxW' (each side >= 16)."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 360x480 (HxW), got {text!r}") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return h, w


def path_arg(text: str) -> Path:
    """argparse type for a file or folder name; an empty one (say an unset shell variable) is refused
    instead of becoming Path('.'), which read or wrote the current directory."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("a path must not be empty")
    return Path(text)


def weights_arg(text: str) -> str:
    """argparse type for --weights: as path_arg (an empty value would have meant the shipped weights
    without saying so), kept as text for the reports that name it."""
    return str(path_arg(text))


def parse_device(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N (whether that device exists is checked when it is used)."""
    value = str(text).strip()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"device must be auto, cpu, cuda or cuda:N, got {text!r}")
    return value


def int_range(lo=None, hi=None):
    """argparse type: an int in [lo, hi] (either bound may be None)."""
    def parse(text):
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {_bounds(lo, hi)}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def float_range(lo=None, hi=None, lo_open=False, hi_open=False):
    """argparse type: a finite float in the range (open or closed at each end)."""
    def parse(text):
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise argparse.ArgumentTypeError(f"must be {_bounds(lo, hi, lo_open, hi_open)}, got {_num(value)}")
        if hi is not None and (value > hi or (hi_open and value == hi)):
            raise argparse.ArgumentTypeError(f"must be {_bounds(lo, hi, lo_open, hi_open)}, got {_num(value)}")
        return value
    parse.__name__ = "float"
    return parse


def _num(value) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _bounds(lo, hi, lo_open=False, hi_open=False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    return f"{'<' if hi_open else '<='} {_num(hi)}"


def parse_max_pixels(text: str) -> int:
    """argparse type for a pixel limit: a count (8388608), an area (4096x2048), or 0 for no limit."""
    value = str(text).strip().lower()
    match = re.fullmatch(r"(\d+)\s*x\s*(\d+)", value)
    try:
        pixels = int(match.group(1)) * int(match.group(2)) if match else int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel count (8388608), an area (4096x2048) or 0 "
                                         f"for no limit, got {text!r}") from None
    if pixels < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = no limit), got {text!r}")
    return pixels


def _check_parents(path: Path, what: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{what} {path}: {parent} is not a directory")
            return


def check_output_dir(path: Path, what: str = "--out") -> Path:
    """An output directory may exist (as a directory) or be creatable; fail before any work if not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a directory")
    _check_parents(path, what)
    return path


def check_output_file(path: Path, what: str = "--out") -> Path:
    """An output file may be replaced, but not when it is a directory or sits under a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; name a file")
    _check_parents(path, what)
    return path


def _os_message(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def friendly_main(fn):
    """Run a tool's main(): user errors become one `error:` line and status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # nothing before the try: an import here (torch, seconds) was where an early Ctrl-C landed
        # as a traceback. runtime.checkpoint.CheckpointError is a ValueError, caught below.
        try:
            return fn(*args, **kwargs)
        except (UserError, ValueError) as exc:
            print(f"error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
            return 2
        except OSError as exc:              # missing file, permission denied, disk full, not a directory
            print(f"error: {one_line(_os_message(exc))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return wrapper
