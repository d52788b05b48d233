"""Check that DDP training computes the single-process gradient of the whole global batch.

Run under torchrun (`torchrun --nproc_per_node 2 -m training.ddp_check [--sync-bn]`): every rank
builds the same seeded model and the same global batch, trains on its shard through DDP with
the trainer's loss, and rank 0 compares the averaged gradients with one process doing the full
batch. BatchNorm: with --sync-bn (CUDA) the ranks share batch statistics, so BN can stay in train
mode; without it BN runs in eval mode (per-rank batch statistics legitimately differ).
Exit code 0 = gradients match within tolerance.
"""
from __future__ import annotations

import argparse
import copy
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

from ecmnet_core.model import ECMNet

from .distributed import cleanup, init_from_env
from .losses import global_weighted_ce, pixel_weights


def make_batch(n: int, num_classes: int, size=(32, 48), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, *size, generator=g)
    y = torch.randint(0, num_classes, (n, *size), generator=g)
    y[torch.rand(n, *size, generator=g) < 0.2] = 255          # some ignored pixels
    y[0, :8] = 0                                             # uneven class / ignore mix per rank
    return x, y


def run(sync_bn: bool, per_rank: int = 2, num_classes: int = 5, atol: float = 1e-5, rtol: float = 1e-3,
        device_pref: str = "auto", naive_loss: bool = False) -> int:
    info, device = init_from_env(device_pref)
    world = info.world_size
    torch.backends.cudnn.allow_tf32 = False          # compare fp32 math, not TF32 rounding
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    base = ECMNet(num_classes=num_classes, ss2d_backend="reference").to(device)
    weights = torch.linspace(0.5, 2.0, num_classes, device=device)
    pw = pixel_weights(weights, num_classes, device)
    x, y = make_batch(per_rank * world, num_classes)
    x, y = x.to(device), y.to(device)
    model = copy.deepcopy(base)
    if sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    bn_train = sync_bn or world == 1
    ddp.train()
    if not bn_train:
        for m in ddp.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    shard = slice(info.rank * per_rank, (info.rank + 1) * per_rank)
    if naive_loss:   # per-rank weighted mean: what the check must catch (differs from the global batch)
        loss = nn.functional.cross_entropy(ddp(x[shard]).float(), y[shard], weight=weights, ignore_index=255)
    else:
        loss = global_weighted_ce(ddp(x[shard]), y[shard], weights, pw, world)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    ok = True
    if info.is_main:
        ref = copy.deepcopy(base).train()
        if not bn_train:
            for m in ref.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        # single process, whole batch, no process group involvement
        full = nn.functional.cross_entropy(ref(x).float(), y, weight=weights, ignore_index=255, reduction="sum")
        full = full / pw[y].sum()
        full.backward()
        worst, worst_name, n = 0.0, "", 0
        for name, p in ref.named_parameters():
            if p.grad is None:
                continue
            key = name if name in grads else name.replace("module.", "")
            g = grads[key]
            err = ((g - p.grad).abs() / (atol + rtol * p.grad.abs())).max().item()
            n += 1
            if err > worst:
                worst, worst_name = err, name
        ok = worst <= 1.0
        print(f"ddp_check: world {world}, backend {dist.get_backend() if dist.is_initialized() else 'none'}, "
              f"device {device}, sync_bn {sync_bn}, bn {'train' if bn_train else 'eval'}: {n} gradients, "
              f"worst |ddp-single| / (atol + rtol*|g|) = {worst:.3g} ({worst_name}) -> "
              f"{'MATCH' if ok else 'MISMATCH'} (atol {atol}, rtol {rtol}); loss rank0 {loss.item():.6f} "
              f"full {full.item():.6f}")
    flag = torch.tensor([1 if ok else 0], device=device)
    if dist.is_initialized():
        dist.broadcast(flag, 0)
    cleanup()
    return 0 if flag.item() else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--per-rank", type=int, default=2)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--naive-loss", action="store_true", help="negative control: per-rank mean loss (must MISMATCH)")
    a = p.parse_args(argv)
    return run(a.sync_bn, a.per_rank, atol=a.atol, rtol=a.rtol, device_pref=a.device, naive_loss=a.naive_loss)


if __name__ == "__main__":
    sys.exit(main())
