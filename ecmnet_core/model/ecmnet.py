"""ECMNet: U-shaped EDAB encoder-decoder, MSAU long skips, Mamba (SS2D) feature fusion."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Tuple

import torch.nn as nn

from .edab import edab_stage
from .ffm import FFM
from .layers import BilinearResize, BNPReLU, ConvBNAct, DownSample, UpSample
from .msau import MSAU


@dataclass
class ECMNetConfig:
    """Every architectural knob; stored in checkpoints so weights rebuild their model."""

    num_classes: int = 19
    stem: int = 32
    widths: Tuple[int, int, int] = (64, 128, 64)          # encoder stages at 1/4, 1/8, 1/16
    enc_dilations: Tuple[Tuple[int, ...], ...] = (
        (2, 2, 2),
        (1, 2, 4, 8, 1, 2, 4, 8),
        (1, 2, 4, 8),
    )
    dec_width: int = 32
    dec_dilations: Tuple[int, ...] = (2, 2)
    ffm_dim: int = 64
    d_state: int = 16
    ssm_expand: int = 2
    ss2d_backend: str = "reference"

    @classmethod
    def from_dict(cls, d: dict) -> "ECMNetConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown ECMNet config keys: {sorted(unknown)}")
        for key in ("widths", "dec_dilations"):
            if key in known:
                known[key] = tuple(known[key])
        if "enc_dilations" in known:
            known["enc_dilations"] = tuple(tuple(s) for s in known["enc_dilations"])
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)


class ECMNet(nn.Module):
    def __init__(self, config: ECMNetConfig | None = None, **overrides):
        super().__init__()
        cfg = config or ECMNetConfig()
        if overrides:
            cfg = ECMNetConfig.from_dict({**cfg.to_dict(), **overrides})
        self.config = cfg
        w1, w2, w3 = cfg.widths
        dw = cfg.dec_width
        self.stem = nn.Sequential(
            ConvBNAct(3, cfg.stem, 3, stride=2), ConvBNAct(cfg.stem, cfg.stem, 3), ConvBNAct(cfg.stem, cfg.stem, 3)
        )
        # encoder
        self.down1, self.enc1 = DownSample(cfg.stem, w1), edab_stage(w1, cfg.enc_dilations[0])
        self.down2, self.enc2 = DownSample(w1, w2), edab_stage(w2, cfg.enc_dilations[1])
        self.down3, self.enc3 = DownSample(w2, w3), edab_stage(w3, cfg.enc_dilations[2])
        self.enc_norm = nn.ModuleList(BNPReLU(c) for c in (w1, w2, w3))
        # long skip connections (line 1..3) through MSAU
        self.msau = nn.ModuleList(MSAU(c) for c in (w1, w2, w3))
        self.ffm = FFM(w1 + w2 + w3 + w3, w3, d_model=cfg.ffm_dim, d_state=cfg.d_state,
                       expand=cfg.ssm_expand, backend=cfg.ss2d_backend)
        # decoder: 1/16 -> 1/8 -> 1/4 -> 1/2
        self.skip_proj = nn.ModuleList(ConvBNAct(c, cin, 1) for c, cin in ((w3, w3), (w2, dw), (w1, dw)))
        self.dec = nn.ModuleList(edab_stage(c, cfg.dec_dilations) for c in (w3, dw, dw))
        self.up = nn.ModuleList([UpSample(w3, dw), UpSample(dw, dw), UpSample(dw, dw)])
        self.classifier = nn.Conv2d(dw, cfg.num_classes, 1)
        self.resize = BilinearResize()          # logits (1/2 resolution) to the input size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def set_ss2d_backend(self, name: str) -> None:
        self.ffm.ss2d.backend = name
        self.config.ss2d_backend = name

    def forward(self, x):
        size = x.shape[-2:]
        s0 = self.stem(x)
        e1 = self.enc_norm[0](self.enc1(self.down1(s0)))
        e2 = self.enc_norm[1](self.enc2(self.down2(e1)))
        e3 = self.enc_norm[2](self.enc3(self.down3(e2)))
        m1, m2, m3 = (m(e) for m, e in zip(self.msau, (e1, e2, e3)))
        y = self.ffm(e3, [m1, m2, m3])
        for dec, proj, up, skip, target in zip(self.dec, self.skip_proj, self.up, (m3, m2, m1), (e2, e1, s0)):
            y = up(dec(y) + proj(skip), target.shape[-2:])
        logits = self.classifier(y)
        return self.resize(logits, size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
