"""Clean exit on Ctrl-C / SIGTERM however many signals arrive, for the node executables.

Why this exists: under `ros2 launch` a Ctrl-C reaches the node twice, once from the terminal
(the whole process group gets SIGINT) and once forwarded by launch (it always forwards when it
runs non-interactively, e.g. from a script or CI), and launch escalates to SIGTERM after 5 s.
With Python's default handler every SIGINT raises KeyboardInterrupt wherever the main thread
is, so the second one lands inside the cleanup (`destroy_node()`, the worker join) and the node
dies with a traceback and exit code -2.

How: `install()` puts Python-level handlers on SIGINT and SIGTERM *before* `rclpy.init()`.
rclpy's own C handler, installed by `rclpy.init()`, shuts the context down (which wakes the
executor: `spin_once` raises ExternalShutdownException) and then chains to the handler that was
there before it, i.e. these. While a long step runs inside `interruptible()` (building the node:
loading and warming up the model; a lifecycle configure) the first signal raises
`ShutdownRequested` so that step stops at once; every other signal only records the request.
Nothing raises during cleanup.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownRequested(BaseException):
    """Raised (at most once, only inside `interruptible()`) by a SIGINT/SIGTERM. A BaseException so
    that `except Exception` blocks (in libraries, in rclpy's lifecycle callbacks) do not swallow it."""


class ShutdownSignals:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._interruptible = 0          # > 0 while a long start-up step runs (main thread)
        self._raised = False
        self.signal: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def install(self) -> "ShutdownSignals":
        """Call from the main thread before rclpy.init() (rclpy chains to what it finds)."""
        global _CURRENT
        for sig in SIGNALS:
            signal.signal(sig, self._handle)
        _CURRENT = self
        return self

    @contextlib.contextmanager
    def interruptible(self):
        """The first signal that arrives inside this block raises ShutdownRequested (once); one
        that came just before it raises on entry."""
        if self.requested and not self._raised:
            self._raised = True
            raise ShutdownRequested(signal.Signals(self.signal).name)
        self._interruptible += 1
        try:
            yield
        finally:
            self._interruptible -= 1

    def cleanup_started(self) -> None:
        """From now on no signal raises, whatever block we are in."""
        self._raised = True

    def ignore_until_exit(self) -> None:
        """Last step before returning the exit status. A signal still in flight (launch forwards
        its SIGINT a moment after the terminal's) must not find the default action: Python's
        finalization puts SIG_DFL back in place of Python-level handlers and the process would die
        with -2 after a clean shutdown. SIG_IGN survives finalization."""
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum, _frame) -> None:
        if not self._event.is_set():
            self.signal = signum
        self._event.set()
        if self._interruptible > 0 and not self._raised:
            self._raised = True
            raise ShutdownRequested(signal.Signals(signum).name)


_CURRENT: Optional[ShutdownSignals] = None


def interruptible():
    """`with interruptible():` around a long step in a node callback (a lifecycle configure):
    Ctrl-C stops it instead of waiting for it. A no-op when the handlers are not installed
    (the node inside a test process or another executable)."""
    return _CURRENT.interruptible() if _CURRENT is not None else contextlib.nullcontext()


def spin_until_shutdown(node, signals: ShutdownSignals, period: float = 0.5) -> None:
    """Spin `node` until a signal, the context's shutdown, or `node.finished` (a lifecycle node
    that reached Finalized). The timeout bounds how long a signal that did not wake the executor
    (no rclpy handler installed) waits to be noticed."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not signals.requested and node.context.ok() and not getattr(node, "finished", False):
            executor.spin_once(timeout_sec=period)
    finally:
        executor.shutdown(timeout_sec=0)
