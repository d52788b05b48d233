"""The trained network in plain PyTorch: ECMNet and its blocks (EDAB, MSAU, FFM, SS2D).

Model files never learn that kernels or inference rewrites exist; the SS2D scan is the one op they
call by name (ops.ss2d.get_scan), and DDA's math comes from ops.dda.reference.
"""
from .ecmnet import ECMNet, ECMNetConfig, count_parameters

__all__ = ["ECMNet", "ECMNetConfig", "count_parameters"]
