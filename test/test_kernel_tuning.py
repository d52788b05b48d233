"""kernel_tuning.pick: times each candidate once per key, keeps the fastest, skips candidates that
cannot launch, and never times during CUDA-graph capture or off the GPU (a fake clock stands in for
CUDA events, so this runs anywhere)."""
import pytest
import torch

from ecmnet_core import kernel_tuning


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
    monkeypatch.setattr(kernel_tuning, "chosen", {})
    monkeypatch.setattr(kernel_tuning, "ENABLED", True)
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
    assert kernel_tuning.pick("k", ["a", "too big", "b", "c"], launch, default="a") == "b"
    best, timings = kernel_tuning.chosen["k"]
    assert best == "b" and timings["a"] == pytest.approx(3.0) and timings["c"] == pytest.approx(2.0)
    assert "out of resources" in timings["too big"]
    assert calls.count("b") == 1 + kernel_tuning.REPEATS          # warm-up + timed launches
    n = len(calls)
    assert kernel_tuning.pick("k", ["a", "b", "c"], launch, default="a") == "b" and len(calls) == n


def test_no_timing_while_capturing_off_the_gpu_or_disabled(fake_gpu, monkeypatch):
    calls = []
    launch = _launcher(fake_gpu, {"a": 3.0, "b": 1.0}, calls)
    fake_gpu["capturing"] = True
    assert kernel_tuning.pick("k", ["a", "b"], launch, default="a") == "a"
    fake_gpu["capturing"] = False
    assert kernel_tuning.pick("k", ["a", "b"], launch, default="a", on_gpu=False) == "a"
    monkeypatch.setattr(kernel_tuning, "ENABLED", False)
    assert kernel_tuning.pick("k", ["a", "b"], launch, default="a") == "a"
    assert calls == [] and kernel_tuning.chosen == {}
