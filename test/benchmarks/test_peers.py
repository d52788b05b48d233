"""Peer networks used by benchmarks/inference.py: paper-sized, right output shapes, fair folding."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # benchmarks/ is not an installed package

from benchmarks.peers import ENet, ERFNet  # noqa: E402
from ecmnet_core.model import count_parameters  # noqa: E402


@pytest.mark.parametrize("cls,expected", [(ERFNet, 2.06e6), (ENet, 0.36e6)])
def test_parameter_counts_match_papers(cls, expected):
    n = count_parameters(cls(19))
    assert abs(n - expected) / expected < 0.01, n


@pytest.mark.parametrize("cls", [ERFNet, ENet])
@pytest.mark.parametrize("size", [(64, 96), (360, 480)])
def test_output_is_logits_at_input_size(cls, size):
    torch.manual_seed(0)
    model = cls(11).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, 11, *size) and torch.isfinite(y).all()


@pytest.mark.parametrize("cls", [ERFNet, ENet])
def test_benchmark_bn_folding_keeps_outputs(cls):
    from benchmarks.inference import fold_peer

    torch.manual_seed(0)
    model = cls(19).eval()
    for m in model.modules():        # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        fused = fold_peer(model)
        got = fused(x)
    n_bn = lambda m: sum(isinstance(s, torch.nn.BatchNorm2d) for s in m.modules())  # noqa: E731
    assert n_bn(fused) < n_bn(model)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
