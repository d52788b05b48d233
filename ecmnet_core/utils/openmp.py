"""OpenMP wait policy for processes that share their cores, as the node does on a robot's computer.

PyTorch's CPU kernels run on an OpenMP team (libgomp in the PyPI wheels) whose threads spin at every
barrier before they sleep. When another process holds one of the cores (a camera driver, another
perception node), each of ECMNet's hundreds of small parallel regions waits for the descheduled team
member's next time slice: `benchmarks/cpu_contention.py` measured 4.7x the quiet latency beside one
other PyTorch process with OpenMP's default, 1.4x with passive waiting, which costs 1.2-1.3x on an
idle host (docs/benchmarks/cpu_latency.md). libgomp reads the policy once, when torch loads it, so
this has to run before the process's first `import torch`.
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
