"""Latest-frame-wins hand-off from subscription callbacks to the inference worker.

One slot per camera: a new frame replaces the one still waiting (counted as dropped), so a
slow model never builds a queue, memory stays flat and the output is always the freshest
frame, as a robot wants.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple


class LatestFrameMailbox:
    def __init__(self, cameras):
        self._cond = threading.Condition()
        self._slots: Dict[Any, Optional[Tuple[Any, float]]] = {c: None for c in cameras}
        self.received = {c: 0 for c in cameras}
        self.dropped = {c: 0 for c in cameras}
        self._closed = False

    def put(self, camera, item) -> bool:
        """Store `item` for `camera`; returns True when it replaced (dropped) an older frame."""
        with self._cond:
            replaced = self._slots[camera] is not None
            self._slots[camera] = (item, time.monotonic())
            self.received[camera] += 1
            if replaced:
                self.dropped[camera] += 1
            self._cond.notify()
            return replaced

    def take_all(self, timeout: Optional[float] = None) -> List[Tuple[Any, Any, float]]:
        """Wait for at least one frame (or close/timeout); return [(camera, item, t_received)]."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or any(v is not None for v in self._slots.values()),
                                timeout)
            out = [(c, v[0], v[1]) for c, v in self._slots.items() if v is not None]
            for c, _, _ in out:
                self._slots[c] = None
            return out

    def pending(self) -> int:
        with self._cond:
            return sum(v is not None for v in self._slots.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
