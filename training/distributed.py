"""torch.distributed plumbing for runs launched by `torchrun` (one process per GPU, or gloo on CPU)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_pref: str = "auto") -> tuple:
    """-> (DistInfo, torch.device). Uses torchrun's env vars when present."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if device_pref == "cuda" and not torch.cuda.is_available():
        from ecmnet_core.cli.common import UserError
        raise UserError("--device cuda requested but CUDA is not available")
    if use_cuda and local >= torch.cuda.device_count():
        from ecmnet_core.cli.common import UserError
        raise UserError(f"process with LOCAL_RANK {local} has no GPU: {torch.cuda.device_count()} CUDA device(s) "
                        "visible; start torchrun with --nproc_per_node <= the GPU count, or pass --device cpu (gloo)")
    if use_cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = os.environ.get("ECMNET_DIST_BACKEND") or ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend, device_id=device if use_cuda else None)
    return DistInfo(rank, world, local), device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def broadcast_flag(flag: bool, device) -> bool:
    """Rank 0 decides (e.g. to stop on the time budget); every rank follows."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
