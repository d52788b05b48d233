"""The two pure-PyTorch scans agree, and the scan means what reference.py documents."""
import math

import pytest
import torch
import torch.nn.functional as F

from ecmnet_core.ops.ss2d import ss2d_scan_sequential, ss2d_scan_vectorized


def make_args(b, d, h, w, n=4, r=2, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    k = 4
    args = [torch.randn(b, d, h, w, generator=g), torch.randn(b, k, r, h, w, generator=g),
            torch.randn(b, k, n, h, w, generator=g), torch.randn(b, k, n, h, w, generator=g),
            torch.randn(k, d, r, generator=g) * 0.5, torch.randn(k, d, generator=g),
            -torch.rand(k, d, n, generator=g) * 2 - 0.1, torch.randn(k, d, generator=g)]
    return [a.double().requires_grad_(requires_grad) if requires_grad else a for a in args]


@pytest.mark.parametrize("size", [(1, 3, 1, 1), (2, 5, 4, 7), (1, 8, 9, 3), (3, 4, 6, 6)])
def test_vectorized_equals_sequential(size):
    args = make_args(*size)
    torch.testing.assert_close(ss2d_scan_vectorized(*args), ss2d_scan_sequential(*args), rtol=1e-5, atol=1e-5)


def test_gradients_agree():
    a1 = make_args(2, 3, 4, 5, requires_grad=True)
    a2 = [a.detach().clone().requires_grad_(True) for a in a1]
    ss2d_scan_sequential(*a1).pow(2).sum().backward()
    ss2d_scan_vectorized(*a2).pow(2).sum().backward()
    for x, y in zip(a1, a2):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-5)


def test_single_row_matches_hand_written_recurrence():
    # H=1: the two column directions see length-1 sequences, the rows a full recurrence.
    x, dt_low, bs, cs, dtw, dtb, a, ds = make_args(1, 1, 1, 4, n=1, r=1, seed=3)
    y = ss2d_scan_sequential(x, dt_low, bs, cs, dtw, dtb, a, ds)
    u = x[0, 0, 0]
    expected = torch.zeros(4)
    for k in range(4):
        delta = F.softplus(dtw[k, 0, 0] * dt_low[0, k, 0, 0] + dtb[k, 0])
        order = {0: range(4), 1: range(3, -1, -1), 2: None, 3: None}[k]
        if order is None:   # column scans of length 1: h = delta*u*B
            expected += cs[0, k, 0, 0] * delta * u * bs[0, k, 0, 0] + ds[k, 0] * u
            continue
        h = 0.0
        for t in order:
            h = math.exp(delta[t] * a[k, 0, 0]) * h + delta[t] * u[t] * bs[0, k, 0, 0, t]
            expected[t] += cs[0, k, 0, 0, t] * h + ds[k, 0] * u[t]
    torch.testing.assert_close(y[0, 0, 0], expected, rtol=1e-5, atol=1e-5)


def test_rows_are_independent():
    args = make_args(1, 2, 5, 6, seed=1)
    base = ss2d_scan_vectorized(*args)
    args[0] = args[0].clone()
    args[0][:, :, 2, 3] += 1.0          # perturb one pixel
    diff = (ss2d_scan_vectorized(*args) - base).abs().sum(1)[0] > 0
    # only its row and its column can change
    changed = diff.nonzero().tolist()
    assert all(r == 2 or c == 3 for r, c in changed)
    assert diff[2].all() and diff[:, 3].all()


def test_half_input_keeps_fp32_state_and_returns_half():
    args = make_args(1, 4, 5, 5)
    half = [args[0].half()] + args[1:]
    out = ss2d_scan_vectorized(*half)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ss2d_scan_vectorized(args[0].half().float(), *args[1:]),
                               rtol=1e-3, atol=1e-3)


def test_shape_errors_name_the_argument():
    args = make_args(1, 4, 5, 5)
    args[2] = args[2][:, :, :3]
    with pytest.raises(ValueError, match="Bs must have shape"):
        ss2d_scan_vectorized(*args)
