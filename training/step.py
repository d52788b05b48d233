"""One training step: augmentation, forward, loss, backward and optimizer update.

Why a class of its own: at CamVid's batch 8 x 360x480 the 0.87M-parameter ECMNet is launch-bound.
Eager PyTorch issues a few thousand small kernels per step and the GPU waits for the host between
them (docs/training.md has the measurements). `GraphedTrainStep` captures the whole step - the
GPU-side augmentation of the uint8 batch, the (optionally compiled) forward, the weighted loss,
backward and the fused, capturable Adam update - in ONE CUDA graph, so a step costs the host one
replay and a few copies into static input buffers.

Same math as `EagerTrainStep`: the graph runs the same modules in training mode (batch-norm
statistics update, as eager). Capturing needs a few warm-up steps; they run on a snapshot-restored
model, so the first real step starts from exactly the state it was given. The learning rate is a
device tensor that `torch.optim.lr_scheduler` updates in place (the graph reads it at every replay).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

# augment(img_u8 (B,3,H,W), lab_u8 (B,H,W), u (N_PARAMS,B)) -> (model input, int64 target)
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def graph_step_supported(device: torch.device, optimizer_name: str, amp_dtype, distributed: bool) -> str:
    """'' when the graphed step can run, else why not (the trainer then runs the eager step)."""
    if device.type != "cuda":
        return "needs a CUDA device"
    if distributed:
        return "DDP's gradient all-reduce runs outside a captured graph"
    if optimizer_name not in ("adam", "adamw", "sgd"):
        return f"optimizer {optimizer_name!r} has no capturable fused implementation here"
    if amp_dtype == torch.float16:
        return "fp16 needs a GradScaler, whose inf check syncs with the host (use amp: bf16 or none)"
    return ""


def make_capturable(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Turn a fused Adam/AdamW/SGD into one a CUDA graph can replay, in place: capturable, step
    counters on the device, and the learning rate a device tensor that LR schedulers fill in place.
    Call it again after `optimizer.load_state_dict`, which puts the saved group settings back."""
    for group in optimizer.param_groups:
        dev = group["params"][0].device
        group["capturable"] = True
        group["fused"] = True
        lr = group["lr"]
        group["lr"] = (lr.detach().to(dev, torch.float32) if torch.is_tensor(lr)
                       else torch.tensor(float(lr), device=dev))
        if "initial_lr" in group and torch.is_tensor(group["initial_lr"]):
            group["initial_lr"] = float(group["initial_lr"])
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and "step" in state:
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(dev)
    return optimizer


class EagerTrainStep:
    """The reference step: plain PyTorch, one kernel launch per op (CPU, DDP, fp16 with a scaler)."""

    graphed = False

    def __init__(self, model, optimizer, loss_fn: Loss, augment: Augment, amp_dtype=None, scaler=None):
        self.model, self.optimizer, self.loss_fn, self.augment = model, optimizer, loss_fn, augment
        self.amp_dtype, self.scaler = amp_dtype, scaler

    def _forward_loss(self, img, lab, u):
        x, y = self.augment(img, lab, u)
        with torch.autocast(x.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None,
                            cache_enabled=False):
            logits = self.model(x)
        return self.loss_fn(logits, y)

    def __call__(self, img: torch.Tensor, lab: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        loss = self._forward_loss(img, lab, u)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None and self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()


class GraphedTrainStep(EagerTrainStep):
    """The whole step as one CUDA graph; inputs are copied into static buffers, the loss is returned
    as a fresh tensor (no host sync). A batch of another shape or dtype captures a new graph."""

    graphed = True

    def __init__(self, model, optimizer, loss_fn: Loss, augment: Augment, amp_dtype=None, warmup: int = 3,
                 module: Optional[torch.nn.Module] = None):
        """`module`: the plain model whose state the warm-up must not change (default `model`; pass
        it when `model` is a torch.compile wrapper)."""
        super().__init__(model, optimizer, loss_fn, augment, amp_dtype, scaler=None)
        self.module = model if module is None else module
        for group in optimizer.param_groups:
            if not group.get("capturable", False) or not torch.is_tensor(group["lr"]):
                raise ValueError("GraphedTrainStep needs a capturable optimizer with a device-tensor learning "
                                 "rate (training.step.make_capturable), or scheduler updates never reach the graph")
        self.warmup = warmup
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self._key = None

    # -- state kept exact across the warm-up steps that capturing needs
    def _snapshot(self):
        with torch.no_grad():
            tensors = [t.detach().clone() for t in self.module.state_dict().values()]
            opt = {p: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                   for p, s in self.optimizer.state.items()}
        return tensors, opt

    def _restore(self, snap):
        tensors, opt = snap
        with torch.no_grad():
            for dst, src in zip(self.module.state_dict().values(), tensors):
                dst.copy_(src)
            for p, state in self.optimizer.state.items():
                saved = opt.get(p)
                for k, v in state.items():
                    if not torch.is_tensor(v):
                        continue
                    if saved is None:       # state the warm-up created: a fresh optimizer has zeros
                        v.zero_()
                    else:
                        v.copy_(saved[k])

    def _capture(self, img, lab, u):
        self.static = [img.clone(), lab.clone(), u.clone()]
        snap = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):       # warm-up: cuDNN autotuning, compilation, lazy optimizer state
            for _ in range(self.warmup):
                loss = self._forward_loss(*self.static)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            del loss                        # its autograd nodes would keep warm-up streams alive
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._forward_loss(*self.static)
            self.static_loss.backward()
            self.optimizer.step()
        self._restore(snap)

    def __call__(self, img: torch.Tensor, lab: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        key = tuple((t.shape, t.dtype, t.device) for t in (img, lab, u))
        if key != self._key:
            self.graph = None
            torch.cuda.synchronize()
            self._capture(img, lab, u)
            self._key = key
        for dst, src in zip(self.static, (img, lab, u)):
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.static_loss.detach().clone()
