"""Peer real-time segmentation networks, re-implemented from their papers for benchmarking.

PEERS is the one registry benchmarks/inference.py (`--peers`), the tests and
`python -m benchmarks.peers` (parameter counts and published numbers) read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .ddrnet import DDRNet23Slim
from .enet import ENet
from .erfnet import ERFNet
from .pidnet import PIDNetS
from .pp_liteseg import PPLiteSegT


@dataclass(frozen=True)
class Peer:
    cls: type
    source: str                               # paper; official code
    published_params_m: Optional[float]       # millions at 19 classes, as the paper states (None: not stated)
    cityscapes_test_miou: Optional[float]     # %, as published (None: not recorded here)
    miou_note: str = ""                       # the conditions of that number where they matter


PEERS = {
    "ERFNet": Peer(ERFNet, "Romera et al., T-ITS 2018; github.com/Eromera/erfnet", None, None),
    "ENet": Peer(ENet, "Paszke et al., arXiv 1606.02147; github.com/e-lab/ENet-training", None, None),
    "DDRNet-23-slim": Peer(DDRNet23Slim, "Hong et al., arXiv 2101.06085; github.com/ydhongHIT/DDRNet", 5.7, 77.4,
                           "full 1024x2048 input"),
    "PIDNet-S": Peer(PIDNetS, "Xu et al., CVPR 2023; github.com/XuJiacong/PIDNet", 7.6, 78.6, "full 1024x2048 input"),
    "PP-LiteSeg-T": Peer(PPLiteSegT, "Peng et al., arXiv 2204.02681; github.com/PaddlePaddle/PaddleSeg", None, 72.0,
                         "PP-LiteSeg-T1: 512x1024 input; T2 at 768x1536: 74.9"),
}

__all__ = ["PEERS", "Peer", "DDRNet23Slim", "ENet", "ERFNet", "PIDNetS", "PPLiteSegT"]
