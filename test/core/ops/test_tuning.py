"""tuning.pick: times each candidate once per key, keeps the fastest, skips candidates that
cannot launch, never times during CUDA-graph capture or off the GPU, and keeps its choices in a file
across processes (a fake clock stands in for CUDA events, so this runs anywhere; the last test runs two
real processes on a GPU)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ecmnet_core.ops import tuning

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake_gpu(monkeypatch):
    clock = {"now": 0.0, "capturing": False}

    class Event:
        def __init__(self, enable_timing=True):
            self.at = None

        def record(self):
            self.at = clock["now"]

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return end.at - self.at

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: clock.__setitem__("now", clock["now"] + 1e3))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: clock["capturing"])
    monkeypatch.setattr(tuning, "chosen", {})
    monkeypatch.setattr(tuning, "ENABLED", True)
    return clock


def _launcher(clock, cost, calls):
    def launch(cfg):
        if cfg not in cost:
            raise RuntimeError(f"out of resources for {cfg}")
        calls.append(cfg)
        clock["now"] += cost[cfg]
    return launch


def test_the_fastest_candidate_is_chosen_once(fake_gpu):
    calls = []
    launch = _launcher(fake_gpu, {"a": 3.0, "b": 1.0, "c": 2.0}, calls)
    assert tuning.pick("k", ["a", "too big", "b", "c"], launch, default="a") == "b"
    best, timings = tuning.chosen["k"]
    assert best == "b" and timings["a"] == pytest.approx(3.0) and timings["c"] == pytest.approx(2.0)
    assert "out of resources" in timings["too big"]
    assert calls.count("b") == 1 + tuning.REPEATS          # warm-up + timed launches
    n = len(calls)
    assert tuning.pick("k", ["a", "b", "c"], launch, default="a") == "b" and len(calls) == n


def test_no_timing_while_capturing_off_the_gpu_or_disabled(fake_gpu, monkeypatch):
    calls = []
    launch = _launcher(fake_gpu, {"a": 3.0, "b": 1.0}, calls)
    fake_gpu["capturing"] = True
    assert tuning.pick("k", ["a", "b"], launch, default="a") == "a"
    fake_gpu["capturing"] = False
    assert tuning.pick("k", ["a", "b"], launch, default="a", on_gpu=False) == "a"
    monkeypatch.setattr(tuning, "ENABLED", False)
    assert tuning.pick("k", ["a", "b"], launch, default="a") == "a"
    assert calls == [] and tuning.chosen == {}


def test_choices_persist_in_the_cache_file(fake_gpu, monkeypatch, tmp_path):
    path = tmp_path / "cache" / "kernel_tuning.json"
    monkeypatch.setattr(tuning, "CACHE_PATH", path)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    calls = []
    cost = {(1024, 4, 0): 3.0, (2048, 4, 0): 1.0, (4096, 8, 0): 2.0, "a": 1.0, "b": 2.0}
    launch = _launcher(fake_gpu, cost, calls)
    key = ("edab_pool", torch.float16, (1, 64, 32, 48), 2)
    tuples = [(1024, 4, 0), (2048, 4, 0), (4096, 8, 0)]
    assert tuning.pick(key, tuples, launch, default=(1024, 4, 0)) == (2048, 4, 0)
    stored = json.loads(path.read_text())
    assert len(stored) == 1 and list(stored.values()) == [[2048, 4, 0]] and "Fake GPU" in next(iter(stored))
    assert not list(path.parent.glob("*.tmp"))                    # written through a temporary file
    # a new process: the stored choice is used without launching anything, even while capturing a graph
    monkeypatch.setattr(tuning, "chosen", {})
    calls.clear()
    fake_gpu["capturing"] = True
    assert tuning.pick(key, tuples, launch, default=(1024, 4, 0)) == (2048, 4, 0) and calls == []
    fake_gpu["capturing"] = False
    assert tuning.chosen[key] == ((2048, 4, 0), {(2048, 4, 0): tuning.FROM_CACHE})
    # a stored choice that is no longer a candidate, or another GPU: timed again
    monkeypatch.setattr(tuning, "chosen", {})
    assert tuning.pick(key, [(1024, 4, 0), (4096, 8, 0)], launch, default=(1024, 4, 0)) == (4096, 8, 0)
    assert calls
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Other GPU")
    monkeypatch.setattr(tuning, "chosen", {})
    calls.clear()
    assert tuning.pick("k", ["a", "b"], launch, default="b") == "a" and calls
    assert len(json.loads(path.read_text())) == 2                 # both GPUs' entries kept


def test_a_bad_cache_file_is_rewritten_and_an_unwritable_one_does_not_stop_tuning(fake_gpu, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    launch = _launcher(fake_gpu, {"a": 2.0, "b": 1.0}, [])
    path = tmp_path / "kernel_tuning.json"
    path.write_text("{not json")
    monkeypatch.setattr(tuning, "CACHE_PATH", path)
    with pytest.warns(UserWarning, match="unreadable"):
        assert tuning.pick("k", ["a", "b"], launch, default="a") == "b"
    assert list(json.loads(path.read_text()).values()) == ["b"]
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setattr(tuning, "CACHE_PATH", blocker / "kernel_tuning.json")   # its folder is a file
    monkeypatch.setattr(tuning, "chosen", {})
    with pytest.warns(UserWarning, match="not written"):
        assert tuning.pick("k", ["a", "b"], launch, default="a") == "b"


_TUNE_ONCE = r"""
import torch
from ecmnet_core.ops import tuning
from ecmnet_core.ops.channels_last.triton import conv_prelu_triton
x = torch.randn(1, 32, 64, 128, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
w = torch.randn(32, 32, 3, 1, device="cuda", dtype=torch.float16)
conv_prelu_triton(x, w, w.permute(2, 3, 1, 0).reshape(96, 32).contiguous(), torch.zeros(32, device="cuda",
                  dtype=torch.float16), torch.full((32,), 0.25, device="cuda", dtype=torch.float16))
(best, timings), = tuning.chosen.values()
print(best, timings)
"""


@pytest.mark.skipif(not (torch.cuda.is_available() and importlib.util.find_spec("triton")),
                    reason="needs CUDA and Triton")
def test_a_second_process_reads_the_choice_from_the_cache_file(tmp_path):
    """On the GPU: the first process times every candidate and writes its choice; the next one reads it
    back instead of timing (the start-up time the cache is for)."""
    env = {**os.environ, "ECMNET_KERNEL_CACHE": str(tmp_path / "kernel_tuning.json"), "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    first, second = (subprocess.run([sys.executable, "-c", _TUNE_ONCE], env=env, capture_output=True, text=True,
                                    timeout=300) for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert "cudnn" in first.stdout and tuning.FROM_CACHE not in first.stdout     # every candidate timed
    assert tuning.FROM_CACHE in second.stdout
    assert second.stdout.split(" {")[0] == first.stdout.split(" {")[0]                   # the same choice
