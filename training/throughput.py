"""Training-step throughput of ECMNet, measured with the trainer's own step (GPU augmentation of a
uint8 batch, forward, class-weighted loss, backward, optimizer update), per variant; used to pick
the recipe defaults and reported next to the trainer's own img/s (metrics.csv).

  python -m training.throughput --batch 8 --size 360 480 --variants fp32,fp32-compile,fp32-graph,fp32-compile-graph
  python -m training.throughput --batch 6 --size 1024 2048 --crop 1024 1024 --optim sgd --variants bf16-compile-graph

A variant is a precision (fp32 | bf16 | fp16) with options: -cl (channels_last), -compile
(torch.compile of the model), -graph (the whole step in one CUDA graph, training.step).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time

import torch

from ecmnet_core.model import ECMNet
from ecmnet_core.palettes import IMAGENET_MEAN, IMAGENET_STD
from ecmnet_core.runtime.checkpoint import git_commit

from .augment import draw_params, random_scale_crop_flip, to_model_input
from .losses import global_weighted_ce, pixel_weights
from .step import EagerTrainStep, GraphedTrainStep, graph_step_supported, make_capturable
from .trainer import build_optimizer

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_step(variant: str, dev, classes: int, crop, backend: str, optim: str):
    """The trainer's step for one variant, on a fresh seeded model."""
    parts = variant.split("-")
    amp = DTYPES[parts[0]]
    cl = "cl" in parts
    torch.manual_seed(0)
    model = ECMNet(num_classes=classes, ss2d_backend=backend).to(dev)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    ocfg = {"name": optim, "lr": 1e-3, "weight_decay": 2e-4, "momentum": 0.9, "nesterov": False,
            "betas": [0.9, 0.999], "fused": "auto"}
    opt = build_optimizer(model.parameters(), ocfg, dev)
    weight = torch.ones(classes, device=dev)
    pw = pixel_weights(weight, classes, dev)

    def loss_fn(logits, y):
        return global_weighted_ce(logits, y, weight, pw)

    def augment(img, lab, u):
        x01, y = random_scale_crop_flip(img, lab, crop, (0.5, 2.0), True, 0.0, u=u)
        return to_model_input(x01, IMAGENET_MEAN, IMAGENET_STD, cl), y

    run_model = torch.compile(model) if "compile" in parts else model
    if "graph" in parts:
        why = graph_step_supported(dev, optim, amp, False)
        if why:
            raise RuntimeError(f"no graphed step: {why}")
        return GraphedTrainStep(run_model, make_capturable(opt), loss_fn, augment, amp, module=model)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    return EagerTrainStep(run_model, opt, loss_fn, augment, amp, scaler)


def step_rate(step, batches, iters: int, warmup: int) -> float:
    """Images per second over `iters` steps after `warmup` steps (compilation, capture)."""
    dev = batches[0][0].device
    for i in range(warmup):
        step(*batches[i % len(batches)])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    losses = [step(*batches[i % len(batches)]) for i in range(iters)]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    if not torch.isfinite(torch.stack(losses)).all():
        raise RuntimeError("non-finite loss")
    return iters * batches[0][0].shape[0] / dt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=[360, 480], help="source image H W (uint8)")
    p.add_argument("--crop", type=int, nargs=2, default=None, help="training crop H W (default: --size)")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--optim", default="adam", choices=["adam", "adamw", "sgd"])
    p.add_argument("--variants", default="fp32,fp32-compile,fp32-graph,fp32-compile-graph",
                   help="comma list of fp32|bf16|fp16 with options -cl -compile -graph")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--backend", default="auto", help="SS2D backend")
    p.add_argument("--profile", default=None, help="variant to profile with torch.profiler (top CUDA ops)")
    a = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    crop = a.crop or a.size
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} commit {git_commit()[:12]}, "
          f"device {name}, torch "
          f"{torch.__version__}, batch {a.batch} of {a.size[0]}x{a.size[1]} uint8 -> crop {crop[0]}x{crop[1]}, "
          f"optim {a.optim}, ss2d {a.backend}", flush=True)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (a.batch, 3, *a.size), generator=g, dtype=torch.uint8).to(dev),
                torch.randint(0, a.classes, (a.batch, *a.size), generator=g, dtype=torch.uint8).to(dev),
                draw_params(a.batch, g).to(dev, torch.float32)) for _ in range(4)]
    for variant in a.variants.split(","):
        t0 = time.perf_counter()
        try:
            step = build_step(variant, dev, a.classes, crop, a.backend, a.optim)
            rate = step_rate(step, batches, a.iters, a.warmup)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
            print(f"{variant:>20}: failed ({type(exc).__name__}: {str(exc)[:300]})", flush=True)
            continue
        print(f"{variant:>20}: {rate:8.1f} img/s  {1000 * a.batch / rate:7.2f} ms/step  "
              f"(incl. warmup/compile {time.perf_counter() - t0:.1f}s)", flush=True)
        if variant == a.profile:
            from torch.profiler import ProfilerActivity, profile
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=acts) as prof:
                step_rate(step, batches, 3, 0)
            key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=70))
    return 0


if __name__ == "__main__":
    sys.exit(main())
