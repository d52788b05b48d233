"""Exponential moving average of the weights and batch-norm statistics: the model that is
validated, selected and shipped when `train.ema_decay` > 0.

Why: with a poly schedule the last epochs of a small net still move its weights from batch to batch;
an average over the last ~1 / (1 - decay) steps evaluates smoother (timm and the mmseg/DDRNet family
offer it for that reason). Built on torch.optim.swa_utils.AveragedModel (one foreach lerp per device
and dtype per step, outside the captured training graph). The decay warms up as in timm,
min(decay, (1 + t) / (10 + t)), so the average is not dominated by the random initialisation.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightEma:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = AveragedModel(model, use_buffers=True)   # deep copy on the model's device
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> torch.nn.Module:
        """The averaged network (same class as the trained one)."""
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def current_decay(self) -> float:
        t = self.updates
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Call after every optimizer step with the plain (not DDP / compiled) model."""
        self.averaged.multi_avg_fn = get_ema_multi_avg_fn(self.current_decay())
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.averaged.n_averaged.fill_(int(state["updates"]))
