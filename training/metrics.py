"""Confusion-matrix segmentation metrics (the Cityscapes benchmark definition of IoU).

Rows = ground truth, columns = prediction; pixels whose ground truth is the ignore index are
not counted. IoU_c = TP / (TP + FP + FN); a class with no ground truth and no prediction has
IoU NaN and is left out of the mean, as cityscapesScripts does.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch


class ConfusionMatrix:
    def __init__(self, num_classes: int, ignore_index: int = 255, device="cpu"):
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: integer tensors of the same shape (class ids; target may hold ignore)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        n = self.num_classes
        t = target.reshape(-1).to(self.mat.device, torch.int64)
        p = pred.reshape(-1).to(self.mat.device, torch.int64)
        keep = t != self.ignore_index
        t, p = t[keep], p[keep]
        if t.numel() and (int(t.max()) >= n or int(t.min()) < 0):
            raise ValueError(f"target holds class ids outside 0..{n - 1} (ignore {self.ignore_index})")
        if p.numel() and (int(p.max()) >= n or int(p.min()) < 0):
            raise ValueError(f"prediction holds class ids outside 0..{n - 1}")
        self.mat += torch.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def all_reduce(self) -> None:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)

    def compute(self, class_names: Optional[List[str]] = None) -> Dict:
        return metrics_from_confusion(self.mat.cpu(), class_names)


def metrics_from_confusion(mat: torch.Tensor, class_names: Optional[List[str]] = None) -> Dict:
    mat = mat.to(torch.float64)
    tp = mat.diag()
    gt = mat.sum(1)
    pr = mat.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    acc_c = torch.where(gt > 0, tp / gt.clamp_min(1), torch.full_like(tp, float("nan")))
    valid = ~torch.isnan(iou)
    total = mat.sum()
    names = class_names or [f"class_{i}" for i in range(mat.shape[0])]
    return {
        "miou": float(iou[valid].mean()) if valid.any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(acc_c[~torch.isnan(acc_c)].mean()) if (~torch.isnan(acc_c)).any() else float("nan"),
        "per_class_iou": {n: float(v) for n, v in zip(names, iou.tolist())},
        "per_class_acc": {n: float(v) for n, v in zip(names, acc_c.tolist())},
        "pixels": int(total),
    }


def format_table(result: Dict) -> str:
    names = list(result["per_class_iou"])
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'class':<{width}}{'IoU':>8}{'Acc':>8}", "-" * (width + 16)]
    for n in names:
        iou, acc = result["per_class_iou"][n], result["per_class_acc"][n]
        lines.append(f"{n:<{width}}{_pct(iou):>8}{_pct(acc):>8}")
    lines.append("-" * (width + 16))
    lines.append(f"{'mIoU':<{width}}{_pct(result['miou']):>8}")
    lines.append(f"{'pixel acc':<{width}}{_pct(result['pixel_acc']):>8}")
    lines.append(f"{'mean acc':<{width}}{_pct(result['mean_acc']):>8}")
    return "\n".join(lines)


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.2f}"
