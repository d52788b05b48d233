"""Per-epoch run logs: CSV (always) and TensorBoard (when installed), both resume-aware."""
from __future__ import annotations

import csv
from pathlib import Path

from ecmnet_core.utils.atomic import atomic_write_text

COLUMNS = ["epoch", "step", "lr", "train_loss", "val_miou", "val_pixel_acc", "img_per_s", "epoch_s",
           "elapsed_min"]


class RunLog:
    def __init__(self, out_dir: Path, resume_epoch: int = 0, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.csv_path = Path(out_dir) / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        # keep rows up to the resumed epoch: epochs re-run after a kill are logged once
        rows = []
        if self.csv_path.is_file() and resume_epoch > 0:
            with open(self.csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= resume_epoch]
        text = ",".join(COLUMNS) + "\n" + "".join(",".join(str(r.get(c, "")) for c in COLUMNS) + "\n"
                                                 for r in rows)
        atomic_write_text(self.csv_path, text)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"), purge_step=resume_step or None)
        except ImportError:
            print("note: tensorboard is not installed; logging to metrics.csv only")

    def log_epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self.tb:
            step = row["step"]
            for key in ("lr", "train_loss", "val_miou", "val_pixel_acc", "img_per_s"):
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(key if key.startswith("val") else f"train/{key}", row[key], step)
            self.tb.flush()

    def log_class_iou(self, per_class: dict, step: int) -> None:
        if self.tb:
            for name, v in per_class.items():
                if v == v:
                    self.tb.add_scalar(f"val_iou/{name}", v, step)

    def close(self) -> None:
        if self.tb:
            self.tb.close()
