"""The training loop: data on the device, AMP, DDP, poly LR, validation, atomic best/last checkpoints,
exact resume and a wall-clock budget so short GPU sessions can be chained.

Reproducibility: the shuffling order of epoch e comes from DistributedSampler(seed).set_epoch(e) and
the augmentation draws from a CPU generator seeded with (seed, epoch, rank), so a run resumed from
last.pt (written at an epoch boundary, with model / optimizer / scheduler / scaler / RNG states)
replays the same batches and augmentations as the uninterrupted run.
"""
from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler

from ecmnet_core.runtime.checkpoint import git_commit, make_metadata, read_checkpoint, save_checkpoint
from ecmnet_core.cli.common import UserError
from ecmnet_core.model import ECMNet
from ecmnet_core.palettes import IMAGENET_MEAN, IMAGENET_STD

from . import rng
from .augment import draw_params, random_scale_crop_flip, to_model_input
from .class_weights import class_counts, enet_weights
from .datasets import IGNORE, DatasetError, build_dataset
from .distributed import DistInfo, all_reduce_sum, broadcast_flag
from .ema import WeightEma
from .inference import predict_probs
from .losses import global_ohem_ce, global_weighted_ce, pixel_weights
from .metrics import ConfusionMatrix, format_table
from .run_log import RunLog
from .step import EagerTrainStep, GraphedTrainStep, graph_step_supported, make_capturable

PRELOAD_LIMIT_BYTES = 3 << 30


def amp_dtype(cfg: dict, device: torch.device):
    amp = cfg["train"]["amp"]
    if device.type != "cuda" or amp in (None, False, "none"):
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def poly_lambda(total_iters: int, warmup_iters: int, warmup_factor: float, power: float, name: str = "poly"):
    def factor(it: int) -> float:
        if it < warmup_iters:
            return warmup_factor + (1.0 - warmup_factor) * it / warmup_iters
        if name == "constant":
            return 1.0
        span = max(1, total_iters - warmup_iters)
        return max(0.0, 1.0 - (it - warmup_iters) / span) ** power
    return factor


def build_optimizer(params, ocfg: dict, device: torch.device = torch.device("cpu")) -> torch.optim.Optimizer:
    """`optim.fused: auto` uses the single-kernel CUDA implementation on GPU (the model has ~400
    small parameter tensors, so a per-tensor optimizer step is mostly launch overhead)."""
    name, lr, wd = ocfg["name"], float(ocfg["lr"]), float(ocfg["weight_decay"])
    fused = ocfg.get("fused", "auto")
    fused = device.type == "cuda" if fused == "auto" else bool(fused)
    extra = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(ocfg["momentum"]), weight_decay=wd,
                               nesterov=bool(ocfg["nesterov"]), **extra)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=wd, betas=tuple(float(b) for b in ocfg["betas"]), **extra)


class _IndexBatches:
    """Batches of indices from a (Distributed)Sampler, for datasets already held as tensors."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self):
        idx = list(self.sampler)
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for i in range(0, stop, self.batch_size):
            yield torch.tensor(idx[i:i + self.batch_size])

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def _flat_diff(a: dict, b: dict, prefix: str = "") -> dict:
    out = {}
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(_flat_diff(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out[f"{prefix}{k}"] = (va, vb)
    return out


def _commit() -> str:
    """Commit of the code (ecmnet_core.runtime.checkpoint.git_commit honours $ECMNET_GIT_COMMIT)."""
    c = git_commit()
    return c if re.fullmatch(r"[0-9a-f]{7,40}", c or "") else "unknown"


class Trainer:
    def __init__(self, cfg: dict, out_dir, dist_info: DistInfo, device: torch.device,
                 resume: Optional[str] = None, log=print):
        self.t_start = time.time()
        self.cfg, self.out, self.dist, self.device = cfg, Path(out_dir), dist_info, device
        self.log = log if dist_info.is_main else (lambda *a, **k: None)
        t = cfg["train"]
        self.amp_dtype = amp_dtype(cfg, device)
        self.channels_last = bool(t["channels_last"]) and device.type == "cuda"
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = not t["deterministic"]
            torch.backends.cudnn.deterministic = bool(t["deterministic"])
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        rng.seed_all(int(t["seed"]) + dist_info.rank)
        self.progress = {"on": True, "off": False}.get(str(t["progress"]), sys.stderr.isatty()) \
            and dist_info.is_main
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        self._setup_data()
        self._setup_model()
        self.start_epoch, self.global_step, self.best_miou = 0, 0, -1.0
        self.step_losses: List[float] = []
        if resume:
            self._resume(resume)
        self.runlog = RunLog(self.out, self.start_epoch, self.global_step, enabled=dist_info.is_main)

    # ------------------------------------------------------------------ data
    def _setup_data(self):
        d, t = self.cfg["dataset"], self.cfg["train"]
        self.train_ds = build_dataset(d, d["train_split"])
        self.val_ds = build_dataset(d, d["val_split"]) if d["val_split"] else None
        self.info = self.train_ds.info
        if len(self.train_ds) == 0:
            raise DatasetError("the training split is empty")
        mode = d["preload"]
        if mode == "auto":
            img, _ = self.train_ds[0]
            need = (len(self.train_ds) + len(self.val_ds or ())) * img[0].numel() * 4
            mode = ("device" if self.device.type == "cuda" else "cpu") if need <= PRELOAD_LIMIT_BYTES else "none"
        self.preload = mode
        t0 = time.time()
        self.train_tensors = self.val_tensors = None
        target = self.device if mode == "device" else torch.device("cpu")
        if mode in ("device", "cpu"):
            imgs, labs = self.train_ds.preload(self.progress)
            self.train_tensors = (imgs.to(target), labs.to(target))
            if self.val_ds is not None:
                vi, vl = self.val_ds.preload(self.progress)
                self.val_tensors = (vi.to(target), vl.to(target))
            mib = sum(x.numel() for x in (*self.train_tensors, *(self.val_tensors or ()))) / 2**20
            self.log(f"data: {self.info.name} preloaded to {target} as uint8 ({mib:.0f} MiB, "
                     f"{len(self.train_ds)} train / {len(self.val_ds or ())} val) in {time.time() - t0:.1f}s")
        else:
            self.log(f"data: {self.info.name} streamed by {d['workers']} DataLoader workers "
                     f"({len(self.train_ds)} train / {len(self.val_ds or ())} val)")
        self.train_sampler = DistributedSampler(range(len(self.train_ds)) if self.train_tensors is not None
                                                else self.train_ds, num_replicas=self.dist.world_size,
                                                rank=self.dist.rank, shuffle=True, seed=int(t["seed"]))
        bs = int(t["batch_size"])
        if len(self.train_sampler) < bs:
            raise UserError(f"train.batch_size {bs} is larger than the {len(self.train_sampler)} training "
                            f"samples per process; lower the batch size")
        if self.train_tensors is not None:
            self.train_batches = _IndexBatches(self.train_sampler, bs, drop_last=True)
        else:
            self.train_batches = DataLoader(self.train_ds, batch_size=bs, sampler=self.train_sampler,
                                            num_workers=int(d["workers"]), drop_last=True,
                                            pin_memory=self.device.type == "cuda",
                                            persistent_workers=int(d["workers"]) > 0)
        input_size = d["input_size"]
        if not input_size:
            ref = self.val_tensors[0][0] if self.val_tensors is not None else \
                (self.val_ds[0][0] if self.val_ds is not None else self.train_ds[0][0])
            input_size = list(ref.shape[-2:])
        self.input_size = [int(v) for v in input_size]

    def _train_iter(self):
        if self.train_tensors is not None:
            imgs, labs = self.train_tensors
            # the epoch's whole sample order goes to the device once; per step only device-side slicing
            order = torch.tensor(list(self.train_sampler), device=imgs.device)
            bs = self.train_batches.batch_size
            for i in range(len(self.train_batches)):
                idx = order[i * bs:(i + 1) * bs]
                yield imgs.index_select(0, idx).to(self.device, non_blocking=True), \
                    labs.index_select(0, idx).to(self.device, non_blocking=True)
        else:
            for img, lab in self.train_batches:
                yield img.to(self.device, non_blocking=True), lab.to(self.device, non_blocking=True)

    def _val_iter(self):
        """This rank's share of the val set (no padding duplicates: metrics are exact under DDP)."""
        n = len(self.val_ds)
        idx = list(range(self.dist.rank, n, self.dist.world_size))
        bs = int(self.cfg["eval"]["batch_size"])
        if self.val_tensors is not None:
            imgs, labs = self.val_tensors
            for i in range(0, len(idx), bs):
                sel = torch.tensor(idx[i:i + bs], device=imgs.device)
                yield imgs.index_select(0, sel).to(self.device), labs.index_select(0, sel).to(self.device)
        else:
            same_size = bool(self.cfg["dataset"]["resize_to"]) or self.info.name in ("camvid", "cityscapes")
            loader = DataLoader(torch.utils.data.Subset(self.val_ds, idx), batch_size=bs if same_size else 1,
                                num_workers=int(self.cfg["dataset"]["workers"]),
                                pin_memory=self.device.type == "cuda")
            for img, lab in loader:
                yield img.to(self.device, non_blocking=True), lab.to(self.device, non_blocking=True)

    # ----------------------------------------------------------------- model
    def _setup_model(self):
        t = self.cfg["train"]
        model = ECMNet(num_classes=self.info.num_classes, **self.cfg["model"])
        if t["sync_bn"] and self.dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model_raw = model
        self.model = model
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if t["compile"]:
            self.model = torch.compile(self.model)
        decay = float(t["ema_decay"])                 # validated: 0 (off) <= decay < 1
        self.ema = WeightEma(model, decay) if decay > 0 else None
        self.selected = self.ema.module if self.ema is not None else model   # validated, saved as best.pt
        # validation stays eager: ~1 % of a run's time, not worth a second compile at every (re)start
        self.eval_model = self.selected
        # loss weights
        cw = self.cfg["loss"]["class_weights"]
        self.class_counts = None
        if cw == "enet":
            labs = self.train_tensors[1] if self.train_tensors is not None else None
            self.class_counts = class_counts(self.train_ds, labs, self.progress)
            weights = enet_weights(self.class_counts, float(self.cfg["loss"]["enet_c"]))
        elif isinstance(cw, list):
            if len(cw) != self.info.num_classes:
                raise UserError(f"loss.class_weights lists {len(cw)} weights for {self.info.num_classes} classes")
            weights = [float(w) for w in cw]
        else:
            weights = None
        self.class_weights = weights
        self.weight_t = torch.tensor(weights, device=self.device) if weights else None
        self.pixel_weight = pixel_weights(self.weight_t, self.info.num_classes, self.device)
        if weights:
            self.log("class weights: " + ", ".join(f"{n}={w:.2f}" for n, w in zip(self.info.classes, weights)))
        why_not = graph_step_supported(self.device, self.cfg["optim"]["name"], self.amp_dtype, self.dist.enabled)
        mode = str(t["step"])
        if mode == "graph" and why_not:
            raise UserError(f"train.step: graph {why_not}")
        graphed = mode == "graph" or (mode == "auto" and not why_not)
        self.optimizer = build_optimizer(model.parameters(), self.cfg["optim"], self.device)
        s = self.cfg["schedule"]
        self.iters_per_epoch = len(self.train_batches)
        self.total_iters = self.iters_per_epoch * int(t["epochs"])
        warmup = int(round(float(s["warmup_epochs"]) * self.iters_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, poly_lambda(self.total_iters, warmup, float(s["warmup_factor"]),
                                        float(s["power"]), s["name"]))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        if graphed:
            # after the scheduler: it keeps float base LRs and fills the device-tensor LR in place
            make_capturable(self.optimizer)
            self.step = GraphedTrainStep(self.model, self.optimizer, self._loss, self._augment, self.amp_dtype,
                                         module=self.model_raw)
        else:
            self.step = EagerTrainStep(self.model, self.optimizer, self._loss, self._augment, self.amp_dtype,
                                       self.scaler)
        self.log(f"training step: {'one CUDA graph' if graphed else 'eager'}"
                 f"{' + torch.compile' if t['compile'] else ''}"
                 f"{'' if graphed or mode == 'eager' else ' (no graph: ' + why_not + ')'}")
    # ---------------------------------------------------------------- resume
    def train_state(self, epoch: int) -> dict:
        state = {"epoch": epoch, "global_step": self.global_step, "best_miou": self.best_miou,
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": rng.capture(),
                 "world_size": self.dist.world_size}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def _resume(self, path: str):
        blob = read_checkpoint(path, map_location="cpu")
        ts = blob.get("train_state")
        if not ts:
            raise UserError(f"{path} has no train_state (it is a best/export checkpoint); resume from last.pt")
        missing, unexpected = self.model_raw.load_state_dict(blob["state_dict"], strict=False)
        if missing or unexpected:
            raise UserError(f"{path} does not match this model/dataset: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}")
        self.optimizer.load_state_dict(ts["optimizer"])
        if self.step.graphed:
            make_capturable(self.optimizer)
        self.scheduler.load_state_dict(ts["scheduler"])
        self.scaler.load_state_dict(ts["scaler"])
        if ts.get("world_size", 1) == self.dist.world_size:
            rng.restore(ts["rng"])
        if self.ema is not None:
            if ts.get("ema"):
                self.ema.load_state_dict(ts["ema"])
            else:
                self.log("note: the checkpoint has no EMA weights; the average starts from its weights now")
        stored = blob["metadata"].get("train_config") or {}
        changed = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in _flat_diff(stored, self.cfg).items()
                   if not k.startswith(("output.", "dataset.root", "dataset.workers", "train.max_minutes",
                                        "train.progress"))]
        if changed:
            self.log("note: resuming with a recipe that differs from the checkpoint's (optimizer and LR-schedule "
                     "state still come from the checkpoint): " + "; ".join(changed))
        if ts.get("world_size", 1) * int(stored.get("train", {}).get("batch_size", 0) or 0) not in \
                (0, self.dist.world_size * int(self.cfg["train"]["batch_size"])):
            self.log("note: the global batch size changed since the checkpoint; the LR schedule continues by step")
        self.start_epoch, self.global_step = int(ts["epoch"]), int(ts["global_step"])
        self.best_miou = float(ts["best_miou"])
        self.log(f"resumed from {path}: epoch {self.start_epoch}, step {self.global_step}, "
                 f"best mIoU {max(self.best_miou, 0):.4f}, lr {self.scheduler.get_last_lr()[0]:.3g}")

    # ----------------------------------------------------------------- train
    def _loss(self, logits, target):
        lc = self.cfg["loss"]
        if lc["ohem_thresh"] is not None:
            return global_ohem_ce(logits, target, self.weight_t, self.pixel_weight, float(lc["ohem_thresh"]),
                                  int(lc["ohem_min_kept"]), self.dist.world_size)
        return global_weighted_ce(logits, target, self.weight_t, self.pixel_weight, self.dist.world_size)

    def _augment(self, img, lab, u):
        t = self.cfg["train"]
        x01, y = random_scale_crop_flip(img, lab, t["crop_size"], t["scale_range"], bool(t["hflip"]),
                                        float(t["color_jitter"]), u=u)
        return to_model_input(x01, self.mean, self.std, self.channels_last), y

    def train_epoch(self, epoch: int) -> Dict:
        t = self.cfg["train"]
        self.model.train()
        self.train_sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed((int(t["seed"]) * 1_000_003 + epoch) * 1009 + self.dist.rank)
        bs = int(t["batch_size"])
        aug = draw_params(self.iters_per_epoch * bs, gen).to(self.device, torch.float32)   # one copy per epoch
        losses = []
        n_img = 0
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.iters_per_epoch, desc=f"epoch {epoch + 1}/{t['epochs']}", leave=False,
                       dynamic_ncols=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        for k, (img, lab) in enumerate(self._train_iter()):
            loss = self.step(img, lab, aug[:, k * bs:(k + 1) * bs])
            if self.ema is not None:
                self.ema.update(self.model_raw)
            self.scheduler.step()
            self.global_step += 1
            losses.append(loss.detach())
            n_img += img.shape[0]
            if bar is not None:
                bar.update(1)
                if self.global_step % 10 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - t0
        if bar is not None:
            bar.close()
        step_losses = torch.stack(losses).float().flatten()
        if not torch.isfinite(step_losses).all():
            # the recipe's fault (too high a learning rate), not a crash: one `error:` line from the CLI
            raise UserError(f"non-finite training loss in epoch {epoch + 1}; lower optim.lr or use amp: bf16")
        all_reduce_sum(step_losses)
        step_losses /= self.dist.world_size
        self.step_losses = step_losses.tolist()
        return {"train_loss": float(step_losses.mean()), "img_per_s": n_img * self.dist.world_size / dt,
                "train_s": dt}

    @torch.no_grad()
    def validate(self, scales=None, flip=None) -> Dict:
        e = self.cfg["eval"]
        scales = scales or e["scales"]
        flip = e["flip"] if flip is None else flip
        if self.dist.enabled:
            # BN running stats drift per rank between DDP's start-of-forward broadcasts; evaluate every
            # shard with rank 0's buffers so the reported mIoU is that of the checkpoint rank 0 saves
            for buf in self.selected.buffers():
                torch.distributed.broadcast(buf, 0)
        self.eval_model.eval()
        cm = ConfusionMatrix(self.info.num_classes, IGNORE, self.device)
        for img, lab in self._val_iter():
            x = to_model_input(img.float().div_(255), self.mean, self.std, self.channels_last)
            probs = predict_probs(self.eval_model, x, scales, flip, self.amp_dtype)
            cm.update(probs.argmax(1), lab)
        cm.all_reduce()
        return cm.compute(self.info.classes)

    def metadata(self, epoch: int, val: Optional[Dict], **extra) -> dict:
        return make_metadata(
            self.info.num_classes, self.info.classes, self.info.colors, IGNORE, self.input_size, self.mean,
            self.std, dataset=self.info.name, train_config=self.cfg, epoch=epoch,
            val_miou=None if val is None else val["miou"],
            val_per_class_iou=None if val is None else val["per_class_iou"],
            best_val_miou=self.best_miou if self.best_miou >= 0 else None,
            class_weights=self.class_weights, global_step=self.global_step,
            git_commit=_commit(), **extra)

    def save(self, name: str, epoch: int, val: Optional[Dict], with_state: bool) -> Path:
        """best.pt holds the selected weights (the EMA when enabled, which val_miou describes);
        last.pt the trained weights plus the train_state (and the EMA inside it) to resume from."""
        if with_state:
            extra = {"weights": "trained"} if self.ema is not None else {}
            return save_checkpoint(self.out / name, self.model_raw, self.metadata(epoch, val, **extra),
                                   self.train_state(epoch))
        extra = {"weights": f"ema (decay {self.ema.decay}, {self.ema.updates} steps)"} if self.ema is not None else {}
        return save_checkpoint(self.out / name, self.selected, self.metadata(epoch, val, **extra))

    def fit(self) -> Dict:
        t = self.cfg["train"]
        epochs = int(t["epochs"])
        budget = float(t["max_minutes"]) * 60 if t["max_minutes"] is not None else None
        if self.start_epoch >= epochs:
            self.log(f"run already finished ({self.start_epoch}/{epochs} epochs); nothing to do")
            return {"finished": True, "epoch": self.start_epoch, "best_miou": self.best_miou}
        self.log(f"training {self.info.name}: {epochs} epochs x {self.iters_per_epoch} iters, "
                 f"batch {t['batch_size']} x {self.dist.world_size} proc, crop {t['crop_size']}, "
                 f"amp {self.amp_dtype or 'off'}, device {self.device}, out {self.out}")
        last_val = None
        self.history: List[Dict] = []
        epoch_times: List[float] = []
        stopped_early = False
        epoch = self.start_epoch
        for epoch in range(self.start_epoch, epochs):
            te = time.time()
            stats = self.train_epoch(epoch)
            done = epoch + 1
            val = None
            if self.val_ds is not None and (done % int(t["val_every"]) == 0 or done == epochs):
                val = self.validate()
                last_val = val
                if val["miou"] > self.best_miou:
                    self.best_miou = val["miou"]
                    if self.dist.is_main:
                        self.save("best.pt", done, val, with_state=False)
            elapsed = time.time() - self.t_start
            epoch_times.append(time.time() - te)
            over = budget is not None and elapsed + max(epoch_times[-3:]) > budget
            stop = broadcast_flag(over, self.device) and done < epochs
            if self.dist.is_main and (done % int(t["checkpoint_every"]) == 0 or done == epochs or stop):
                self.save("last.pt", done, val or last_val, with_state=True)
            lr = float(self.scheduler.get_last_lr()[0])
            row = {"epoch": done, "step": self.global_step, "lr": lr, "train_loss": stats["train_loss"],
                   "val_miou": "" if val is None else val["miou"],
                   "val_pixel_acc": "" if val is None else val["pixel_acc"],
                   "img_per_s": stats["img_per_s"], "epoch_s": epoch_times[-1], "elapsed_min": elapsed / 60}
            self.runlog.log_epoch(row)
            self.history.append({**row, "step_losses": list(self.step_losses)})
            if val is not None:
                self.runlog.log_class_iou(val["per_class_iou"], self.global_step)
            msg = (f"epoch {done}/{epochs} step {self.global_step} loss {stats['train_loss']:.4f} "
                   f"lr {lr:.3g} {stats['img_per_s']:.1f} img/s ({stats['train_s']:.1f}s train)")
            if val is not None:
                msg += f" | val mIoU {val['miou']:.4f} acc {val['pixel_acc']:.4f} (best {self.best_miou:.4f})"
            self.log(msg)
            if stop:
                stopped_early = True
                self.log(f"time budget of {t['max_minutes']} min reached after epoch {done}; wrote "
                         f"{self.out / 'last.pt'} - continue with: ecmnet-train --out {self.out} --resume auto")
                break
        if last_val is not None and self.dist.is_main:
            self.log(format_table(last_val))
        self.runlog.close()
        return {"finished": not stopped_early, "epoch": epoch + 1, "best_miou": self.best_miou,
                "last_val": last_val, "history": self.history}
