"""Atomic file writes: a crash mid-write never leaves a truncated checkpoint or report."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the same directory; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; keep the usual file mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _default_mode(path: Path, directory: bool) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)   # mkdtemp makes 0700


@contextlib.contextmanager
def staged_directory(target):
    """Yield an empty temporary directory next to `target` to write a multi-file result into.

    On success its contents appear in `target`: the directory is renamed into place when `target`
    does not exist yet (the whole result appears at once), else each entry is moved in. On failure
    nothing is left behind: neither the temporary directory nor parent directories made here.
    """
    target = Path(target)
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]   # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    done = False
    try:
        yield stage
        _default_mode(stage, directory=True)
        if target.exists():
            for item in sorted(stage.iterdir()):
                os.replace(item, target / item.name)
        else:
            os.rename(stage, target)
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done:
            for parent in missing:
                try:
                    parent.rmdir()
                except OSError:
                    break


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
