"""ECMNet: lightweight CNN + Mamba (SS2D) semantic segmentation."""
from .model import ECMNet, ECMNetConfig, count_parameters

__all__ = ["ECMNet", "ECMNetConfig", "count_parameters"]
__version__ = "0.1.0"
