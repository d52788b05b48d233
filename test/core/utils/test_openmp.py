"""The node's OpenMP wait policy: passive unless the user chose one, and it reaches libgomp (which
reports its spin count with OMP_DISPLAY_ENV=VERBOSE: 300000 spins by default, 0 when passive)."""
import subprocess
import sys

import pytest

from ecmnet_core.utils.openmp import prefer_passive_wait

PROBE = ("import sys; from ecmnet_core.utils.openmp import prefer_passive_wait\n"
         "if sys.argv[1] == 'prefer': prefer_passive_wait()\n"
         "import torch; torch.ones(256, 256).sum()")


def _spincount(mode: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "OMP_DISPLAY_ENV": "VERBOSE"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "GOMP_SPINCOUNT" in line]
    if not lines:
        pytest.skip("this torch build's OpenMP is not libgomp (no GOMP_SPINCOUNT in OMP_DISPLAY_ENV)")
    return lines[0].split("=", 1)[1].strip().strip("'")


def test_passive_wait_reaches_libgomp():
    assert _spincount("default") == "300000"
    assert _spincount("prefer") == "0"


def test_the_users_policy_wins():
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert prefer_passive_wait(env) == "ACTIVE" and env == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_nothing_is_set_once_torch_is_loaded():
    import torch  # noqa: F401 - the situation under test

    env = {}
    assert prefer_passive_wait(env) == "" and env == {}
