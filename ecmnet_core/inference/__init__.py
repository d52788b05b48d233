"""Eval-only rewrites of a trained ECMNet that compute the same outputs faster: BN folding, merged
convolutions, kernel-backed modules (modules.py) and fused EDAB stages (fused_edab.py), swapped in
by rewrites.py. SegmentationEngine applies them to its own copy of the model.
"""
from .rewrites import fold_batchnorm, optimize_for_inference

__all__ = ["fold_batchnorm", "optimize_for_inference"]
