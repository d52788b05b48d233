"""What every benchmark prints with its numbers: the commit it ran at and the host it ran on."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """Short commit, marked when tracked files differ from it (the numbers then belong to no commit).
    $ECMNET_GIT_COMMIT wins: the GPU machine's copy of the tree has no git history (scripts/device)."""
    env = os.environ.get("ECMNET_GIT_COMMIT", "").strip()
    if env:
        return env
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev or "unknown") + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
