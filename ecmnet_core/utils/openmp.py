"""OpenMP wait policy for processes that share their cores, as the node does on a robot's computer.

PyTorch's CPU kernels run on an OpenMP team (libgomp in the PyPI wheels) whose threads spin at every
barrier before they sleep. When another process holds one of the cores (a camera driver, another
perception node), each of ECMNet's hundreds of small parallel regions waits for the descheduled team
member's next time slice. `benchmarks/cpu_contention.py` on 2 cores beside one other busy process:
3.2-3.4x the idle latency with OpenMP's default (p90 up to 9.8x), 1.5-1.8x with passive waiting,
which costs 3-21 % on an idle host (docs/benchmarks/cpu_latency.md). libgomp reads the policy once,
when torch loads it, so this has to run before the process's first `import torch`.
"""
from __future__ import annotations

import os
import sys

VARIABLE = "OMP_WAIT_POLICY"


def prefer_passive_wait(environ=None) -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the environment already names a policy (the user's choice
    wins) or torch is already loaded (too late to matter). Returns the policy in effect, '' for
    OpenMP's default."""
    environ = os.environ if environ is None else environ
    if not environ.get(VARIABLE, "").strip() and "torch" not in sys.modules:
        environ[VARIABLE] = "PASSIVE"
    return environ.get(VARIABLE, "").strip()
