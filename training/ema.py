"""Exponential moving average of the weights and batch-norm statistics: the model that is
validated, selected and shipped when `train.ema_decay` > 0.

Why: with a poly schedule the last epochs of a small net still move its weights from batch to batch;
an average over the last ~1 / (1 - decay) steps evaluates smoother (timm and the mmseg/DDRNet family
offer it for that reason). The decay warms up as in timm, min(decay, (1 + t) / (10 + t)), so the
average is not dominated by the random initialisation; the first update copies the model.

Why not torch.optim.swa_utils.AveragedModel: its update compares a device counter with zero once per
tensor, i.e. ~400 host-device synchronisations per step, which stalls the host between the replays of
the graphed training step. Here the counter lives on the host and an update is one foreach lerp over
the floating-point tensors plus copies of the integer ones (BN's num_batches_tracked): no sync.
"""
from __future__ import annotations

import copy

import torch


class WeightEma:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).requires_grad_(False)   # same class, same device
        self.updates = 0

    def current_decay(self) -> float:
        t = self.updates
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @staticmethod
    def _pairs(ema: torch.nn.Module, model: torch.nn.Module):
        mine, theirs = ema.state_dict(), model.state_dict()
        if mine.keys() != theirs.keys():
            raise ValueError("EMA update from a model of another structure")
        return [(mine[k], theirs[k]) for k in mine]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Call after every optimizer step with the plain (not DDP / compiled) model."""
        pairs = self._pairs(self.module, model)
        if self.updates == 0:
            for mine, theirs in pairs:
                mine.copy_(theirs)
        else:
            weight = 1.0 - self.current_decay()
            floats = [(m, t) for m, t in pairs if m.is_floating_point()]
            torch._foreach_lerp_([m for m, _ in floats], [t for _, t in floats], weight)
            for mine, theirs in pairs:
                if not mine.is_floating_point():
                    mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates,
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])
