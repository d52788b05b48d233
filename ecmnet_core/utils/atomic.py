"""Atomic file writes: a crash mid-write never leaves a truncated checkpoint or report."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def parents_made(directory):
    """mkdir -p `directory`; the folders this made are removed again when the block fails."""
    directory = Path(directory)
    missing = [p for p in (directory, *directory.parents) if not p.exists()]   # deepest first
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield directory
    except BaseException:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:            # no longer empty (another writer) or already gone
                break
        raise


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the same directory; rename it over `path` on success. On failure
    nothing is left behind: neither the temporary file nor parent directories made here."""
    path = Path(path)
    tmp = None
    with parents_made(path.parent):
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            yield Path(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)      # mkstemp makes 0600; keep the usual file mode
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp is not None and os.path.exists(tmp):
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
    with parents_made(target.parent):
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            yield stage
            _default_mode(stage, directory=True)
            if target.exists():
                for item in sorted(stage.iterdir()):
                    os.replace(item, target / item.name)
            else:
                os.rename(stage, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


# atomic_path's temporary name: f".{name}." + mkstemp's 8 random characters + ".tmp"
_TMP_NAME_EXTRA = 2 + 8 + 4


def name_fits(directory, name: str) -> bool:
    """Whether atomic_path can write a file `name` into `directory` (made if missing): the
    temporary name it writes first must fit the file system's name limit too."""
    folder = Path(directory)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    return len(os.fsencode(name)) + _TMP_NAME_EXTRA <= limit


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
