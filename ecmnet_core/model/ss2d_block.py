"""SS2D block (VMamba-style 2-D selective scan) whose scan runs on a selectable backend."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.ss2d import K_DIRECTIONS, get_scan


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SS2D(nn.Module):
    """in_proj -> (x, z); x -> depthwise conv -> SiLU -> x_proj -> 4-direction scan;
    LayerNorm(y) * SiLU(z) -> out_proj. Parameters follow Mamba's initialisation."""

    def __init__(self, d_model, d_state=16, expand=2, d_conv=3, dt_rank=None,
                 dt_min=1e-3, dt_max=1e-1, backend="reference"):
        super().__init__()
        d_inner = int(expand * d_model)
        r = dt_rank or math.ceil(d_model / 16)
        k = K_DIRECTIONS
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, r
        self.in_proj = nn.Conv2d(d_model, 2 * d_inner, 1, bias=False)
        self.conv = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner)
        self.x_proj = nn.Conv2d(d_inner, k * (r + 2 * d_state), 1, bias=False)
        self.dt_weight = nn.Parameter(torch.empty(k, d_inner, r).uniform_(-r ** -0.5, r ** -0.5))
        dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))   # inverse softplus
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k, d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.Ds = nn.Parameter(torch.ones(k, d_inner))
        self.out_norm = ChannelLayerNorm(d_inner)
        self.out_proj = nn.Conv2d(d_inner, d_model, 1, bias=False)
        self.backend = backend

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._scan = get_scan(name)   # raises a clear error for unknown / unavailable names
        self._backend = name

    def forward(self, x):
        b, _, h, w = x.shape
        u, z = self.in_proj(x).chunk(2, dim=1)
        u = F.silu(self.conv(u))
        proj = self.x_proj(u).view(b, K_DIRECTIONS, self.dt_rank + 2 * self.d_state, h, w)
        dt_low, bs, cs = proj.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        y = self._scan(u, dt_low, bs, cs, self.dt_weight, self.dt_bias, -torch.exp(self.A_log), self.Ds)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)
