"""Peer real-time segmentation networks, re-implemented from their papers for benchmarking."""
from .enet import ENet
from .erfnet import ERFNet

__all__ = ["ENet", "ERFNet"]
