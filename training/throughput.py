"""Training-step throughput of ECMNet (forward + backward + Adam step) per precision / memory format,
and where the GPU time goes; used to pick the recipe defaults (amp, channels_last, compile).

  python -m training.throughput --batch 8 --size 360 480 --variants fp32,bf16,bf16-cl,fp16 --profile bf16
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time

import torch
import torch.nn.functional as F

from ecmnet_core.model import ECMNet


def step_rate(model, opt, x, y, dtype, iters: int, warmup: int) -> float:
    def step():
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
        loss = F.cross_entropy(out.float(), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(warmup):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return iters * x.shape[0] / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=[360, 480])
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--variants", default="fp32,bf16,bf16-cl,fp16",
                   help="comma list of fp32|bf16|fp16 with optional -cl (channels_last) / -compile")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--backend", default="reference", help="SS2D backend")
    p.add_argument("--profile", default=None, help="variant to profile with torch.profiler (top CUDA ops)")
    a = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} device {name}, torch "
          f"{torch.__version__}, batch {a.batch} x {a.size[0]}x{a.size[1]}, ss2d {a.backend}")
    x0 = torch.randn(a.batch, 3, *a.size, device=dev)
    y = torch.randint(0, a.classes, (a.batch, *a.size), device=dev)
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    for variant in a.variants.split(","):
        parts = variant.split("-")
        torch.manual_seed(0)
        model = ECMNet(num_classes=a.classes, ss2d_backend=a.backend).to(dev)
        x = x0
        if "cl" in parts:
            model = model.to(memory_format=torch.channels_last)
            x = x0.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        run_model = torch.compile(model) if "compile" in parts else model
        t0 = time.perf_counter()
        try:
            rate = step_rate(run_model, opt, x, y, dtypes[parts[0]], a.iters, a.warmup)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
            print(f"{variant:>16}: failed ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        print(f"{variant:>16}: {rate:8.1f} img/s  (incl. warmup/compile {time.perf_counter() - t0:.1f}s)")
        if variant == a.profile:
            from torch.profiler import ProfilerActivity, profile
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=acts) as prof:
                step_rate(run_model, opt, x, y, dtypes[parts[0]], 2, 0)
            key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
