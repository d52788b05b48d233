"""The graphed training step (training/step.py) against the eager step: same losses, gradients and
weights on the GPU; the LR schedule reaches the captured optimizer; CPU falls back to eager."""
from __future__ import annotations

import os

import pytest
import torch

from ecmnet_core.model import ECMNet
from training.augment import draw_params, random_scale_crop_flip
from training.step import EagerTrainStep, GraphedTrainStep, graph_step_supported, make_capturable
from training.losses import global_ohem_ce, global_weighted_ce, pixel_weights
from training.trainer import build_optimizer, poly_lambda

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
OCFG = {"name": "adam", "lr": 1e-3, "weight_decay": 2e-4, "momentum": 0.9, "nesterov": False,
        "betas": [0.9, 0.999], "fused": "auto"}


def test_graph_step_supported_says_why_not():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert "CUDA" in graph_step_supported(cpu, "adam", None, False)
    assert "DDP" in graph_step_supported(gpu, "adam", None, True)
    assert "GradScaler" in graph_step_supported(gpu, "adam", torch.float16, False)
    assert "rmsprop" in graph_step_supported(gpu, "rmsprop", None, False)
    assert graph_step_supported(gpu, "adamw", torch.bfloat16, False) == ""


def _setup(dev, optim="adam", compile_model=False, classes=11, loss="ce"):
    torch.manual_seed(0)
    model = ECMNet(num_classes=classes, ss2d_backend="auto").to(dev)
    opt = build_optimizer(model.parameters(), {**OCFG, "name": optim, "lr": 0.01 if optim == "sgd" else 1e-3}, dev)
    weight = torch.linspace(0.5, 2.0, classes, device=dev)
    pw = pixel_weights(weight, classes, dev)

    def loss_fn(logits, y):
        if loss == "ohem":
            return global_ohem_ce(logits, y, weight, pw, thresh=0.7, min_kept=4000)
        return global_weighted_ce(logits, y, weight, pw)

    def augment(img, lab, u):
        x, y = random_scale_crop_flip(img, lab, (96, 128), (0.5, 2.0), True, 0.0, u=u)
        return (x - 0.45) / 0.25, y

    run = torch.compile(model) if compile_model else model
    return model, run, opt, loss_fn, augment


def _batches(dev, n=4, classes=11):
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 256, (2, 3, 96, 128), generator=g, dtype=torch.uint8).to(dev),
             torch.randint(0, classes, (2, 96, 128), generator=g, dtype=torch.uint8).to(dev),
             draw_params(2, g).to(dev, torch.float32)) for _ in range(n)]


@pytest.fixture
def exact_fp32():
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _close(a, b, tol):
    scale = b.abs().max().clamp_min(1e-6)
    return float((a - b).abs().max() / scale) <= tol


SLOW = pytest.mark.skipif(os.environ.get("ECMNET_SLOW_GPU_TESTS", "0") == "0",
                          reason="compiling ECMNet's training graph takes minutes: ECMNET_SLOW_GPU_TESTS=1")


@cuda
@pytest.mark.parametrize("optim,compile_model,loss", [("adam", False, "ce"), ("adamw", False, "ce"),
                                                      ("sgd", False, "ce"), ("adam", False, "ohem"),
                                                      pytest.param("adam", True, "ce", marks=SLOW)])
def test_graphed_step_matches_eager(exact_fp32, optim, compile_model, loss):
    dev = torch.device("cuda")
    batches = _batches(dev)
    m_e, run_e, opt_e, loss_e, aug = _setup(dev, optim, loss=loss)
    eager = EagerTrainStep(run_e, opt_e, loss_e, aug)
    m_g, run_g, opt_g, loss_g, aug = _setup(dev, optim, compile_model, loss=loss)
    graphed = GraphedTrainStep(run_g, make_capturable(opt_g), loss_g, aug, module=m_g)
    tol = 2e-3 if compile_model else 2e-4
    for i, b in enumerate(batches):
        le, lg = eager(*b), graphed(*b)
        assert _close(lg, le, tol), (i, float(le), float(lg))
        if i == 0:   # the first step's gradients, before the weights drift apart by rounding
            for (name, pe), pg in zip(m_e.named_parameters(), m_g.parameters()):
                assert pg.grad is not None and _close(pg.grad, pe.grad, 50 * tol), name
                if optim == "sgd":   # SGD's update is linear in the gradient: the weights agree as closely
                    assert _close(pg, pe, 50 * tol), name
    torch.cuda.synchronize()
    for (name, pe), pg in zip(m_e.state_dict().items(), m_g.state_dict().values()):
        # BN num_batches_tracked: the warm-up steps were undone. Float weights are not compared after
        # several steps: BatchNorm biases near zero amplify rounding differences step by step, and
        # Adam's early updates are about lr * sign(grad), so the per-step losses are the check there.
        if not pe.is_floating_point():
            assert torch.equal(pg, pe), name


@cuda
def test_schedule_reaches_the_captured_optimizer():
    dev = torch.device("cuda")
    batches = _batches(dev)
    model, run, opt, loss_fn, aug = _setup(dev)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(10, 0, 1.0, 0.9))
    step = GraphedTrainStep(run, make_capturable(opt), loss_fn, aug, module=model)
    step(*batches[0])
    for group in opt.param_groups:
        group["lr"].fill_(0.0)                      # what a scheduler at lr 0 does, in place
    before = [p.detach().clone() for p in model.parameters()]
    step(*batches[1])
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters())), "lr 0 must freeze weights"
    sched.step()                                    # back to the schedule: weights move again
    assert float(opt.param_groups[0]["lr"]) > 0
    step(*batches[2])
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


@cuda
def test_resumed_optimizer_state_is_used_by_the_graph(exact_fp32):
    """load_state_dict puts float LRs back; make_capturable again, then graph == eager."""
    dev = torch.device("cuda")
    batches = _batches(dev)
    m_e, run_e, opt_e, loss_e, aug = _setup(dev)
    eager = EagerTrainStep(run_e, opt_e, loss_e, aug)
    eager(*batches[0])
    state = {"model": {k: v.clone() for k, v in m_e.state_dict().items()}, "opt": opt_e.state_dict()}
    m_g, run_g, opt_g, loss_g, _ = _setup(dev)
    m_g.load_state_dict(state["model"])
    opt_g.load_state_dict(state["opt"])
    graphed = GraphedTrainStep(run_g, make_capturable(opt_g), loss_g, aug, module=m_g)
    le, lg = eager(*batches[1]), graphed(*batches[1])
    assert _close(lg, le, 2e-4)
    le, lg = eager(*batches[2]), graphed(*batches[2])
    assert _close(lg, le, 2e-4)
