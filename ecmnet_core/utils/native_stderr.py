"""Capture what C libraries (libjpeg, libpng, libtiff, OpenCV's logger) write to file descriptor 2.

Why: their warnings ("Premature end of JPEG file", "libpng error: ...") bypass `sys.stderr`, so a tool
that promises one `error:` line would print theirs too, and the text is the only sign that libjpeg
filled a truncated image with grey. Redirecting fd 2 is process-wide: use it only in single-threaded
command-line tools, never in the node (its logger threads write to the same descriptor).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile


class Captured:
    text: str = ""


@contextlib.contextmanager
def capture_native_stderr():
    """Within the block, fd 2 goes to a temporary file; afterwards `captured.text` holds what came."""
    captured = Captured()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):        # no fd 2 (daemon) or a replaced sys.stderr
        yield captured
        return
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                tmp.seek(0)
                captured.text = tmp.read().decode("utf-8", "replace")
    finally:
        os.close(saved)
