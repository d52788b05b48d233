"""Bounded per-camera statistics behind /diagnostics: rates, latency percentiles, errors."""
from __future__ import annotations

import collections
import threading
import time
from typing import Dict, Optional

import numpy as np


def percentile_ms(samples, q: float) -> float:
    if not samples:
        return float("nan")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q) * 1000.0)


class CameraStats:
    """Everything is bounded: latency windows are deques of fixed length."""

    def __init__(self, window: int = 1000):
        self.lock = threading.Lock()
        self.latency = collections.deque(maxlen=window)      # receive -> publish, seconds
        self.inference = collections.deque(maxlen=window)    # model time share, seconds
        self.stamp_age = collections.deque(maxlen=window)    # header stamp -> publish, seconds
        self.processed = 0
        self.errors = 0
        self.last_error = ""
        self.last_input = None
        self._rate_mark = (time.monotonic(), 0, 0)           # (t, processed, received) at last report

    def record(self, latency: float, inference: float, stamp_age: Optional[float]) -> None:
        with self.lock:
            self.processed += 1
            self.latency.append(latency)
            self.inference.append(inference)
            if stamp_age is not None:
                self.stamp_age.append(stamp_age)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = message

    def snapshot(self, received: int) -> Dict[str, float]:
        with self.lock:
            now = time.monotonic()
            t0, p0, r0 = self._rate_mark
            dt = max(now - t0, 1e-9)
            self._rate_mark = (now, self.processed, received)
            return {
                "output_fps": (self.processed - p0) / dt,
                "input_fps": (received - r0) / dt,
                "latency_p50_ms": percentile_ms(self.latency, 50),
                "latency_p99_ms": percentile_ms(self.latency, 99),
                "inference_p50_ms": percentile_ms(self.inference, 50),
                "stamp_age_p50_ms": percentile_ms(self.stamp_age, 50),
                "processed": self.processed,
                "errors": self.errors,
                "last_error": self.last_error,
            }


class ErrorThrottle:
    """At most one log line per (camera, kind) per period; counts what it suppressed."""

    def __init__(self, period: float):
        self.period = period
        self._last: Dict[tuple, float] = {}
        self._suppressed: Dict[tuple, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def should_log(self, key) -> Optional[int]:
        """None if suppressed, else the number of messages suppressed since the last log."""
        with self._lock:
            now = time.monotonic()
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                self._suppressed[key] += 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)
