"""Inference latency of ECMNet vs its peers (benchmarks/peers: DDRNet-23-slim, PIDNet-S, PP-LiteSeg-T,
ERFNet, ENet) on one GPU, in one run.

    PYTHONPATH=. python benchmarks/inference.py                 # all sizes, fp32 + fp16
    PYTHONPATH=. python benchmarks/inference.py --sizes 1024x2048 --precisions fp16 --profile

Two measurements per configuration (batch 1, random-init weights: speed does not
depend on the values):
  net  the network alone on a normalised device tensor (channels_last, BN folded,
       replayed as a CUDA graph when capture works; 'eager' is printed otherwise);
       CUDA-event timing per iteration.
  e2e  SegmentationEngine.infer: uint8 host image -> uint8 mask on the host
       (pinned upload, normalise, network, argmax, download); wall clock per call.
Peers get exactly the same treatment (conv+BN folded with torch.fx, channels_last,
same dtype, same CUDA graph capture, same engine). Ratios are ECMNet / peer p50.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peers import PEERS  # noqa: E402
from benchmarks.provenance import git_commit  # noqa: E402
from ecmnet_core.runtime.checkpoint import make_metadata  # noqa: E402
from ecmnet_core.runtime.engine import (PRECISIONS, SegmentationEngine, default_kernel_options,  # noqa: E402
                                optimize_for_inference)
from ecmnet_core.model import ECMNet, count_parameters  # noqa: E402
from ecmnet_core.ops.ss2d import available_backends  # noqa: E402

NUM_CLASSES = 19
W = max(len(n) for n in ["ECMNet+kf", *PEERS])     # width of the model column


def parse_sizes(text):
    return [tuple(int(v) for v in s.split("x")) for s in text.split(",")]


def percentiles(ms):
    ms = sorted(ms)
    p = lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]  # noqa: E731
    return {"p50": p(0.5), "p99": p(0.99), "mean": statistics.fmean(ms), "fps": 1000.0 / statistics.fmean(ms)}


def fold_peer(model):
    """conv+BN folding for the peers (torch.fx pattern fusion); unchanged if not traceable."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception as exc:  # noqa: BLE001
        print(f"  note: fx conv+BN fusion failed for {type(model).__name__} ({exc}); unfused")
        return model


# ECMNet rows with the engine's kernel options set: row name -> (command-line flag, engine options).
# Row ECMNet has the engine's defaults (engine.default_kernel_options): the kernels on when compiled.
VARIANTS = {"ECMNet+k": ("channels_last_kernels", dict(channels_last_kernels=True, fused_edab=False)),
            "ECMNet+kf": ("fused_edab", dict(channels_last_kernels=True, fused_edab=True)),
            "ECMNet-k": ("without_kernels", dict(channels_last_kernels=False, fused_edab=False))}


def prepare(model, precision, fold=True, ecmnet=True, channels_last=True, shifts=False, options=None):
    model = model.eval()
    if fold:
        model = (optimize_for_inference(model, depthwise_as_shifts=shifts, **(options or {}))
                 if ecmnet else fold_peer(model))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.cuda().to(memory_format=fmt).to(PRECISIONS[precision])
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.inference_mode()
def time_network(model, size, precision, iters, warmup, graphs=True, channels_last=True):
    x = torch.randn(1, 3, *size, device="cuda").to(PRECISIONS[precision]).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    stream = torch.cuda.Stream()
    mode = "eager"
    fn = lambda: model(x)  # noqa: E731
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    stream.synchronize()
    if graphs:
        try:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=stream):
                model(x)
            fn, mode = g.replay, "graph"
        except Exception as exc:  # noqa: BLE001
            torch.cuda.synchronize()
            print(f"  note: graph capture failed ({type(exc).__name__}: {str(exc)[:120]}); eager")
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    with torch.cuda.stream(stream):
        for _ in range(5):
            fn()
        for start, end in events:
            start.record(stream)
            fn()
            end.record(stream)
    stream.synchronize()
    return dict(percentiles([s.elapsed_time(e) for s, e in events]), mode=mode)


def peer_engine_source(peer):
    """The engine folds BN only for ECMNet: a peer enters it already folded, in fp32, on the CPU."""
    return prepare(copy.deepcopy(peer), "fp32", ecmnet=False).cpu()


def time_engine(model, meta, size, precision, iters, warmup, graphs=True, fold=True, compile=False, options=None):
    engine = SegmentationEngine.from_model(model, meta, device="cuda", precision=precision,
                                           cuda_graphs=graphs, fold_bn=fold, compile=compile, **(options or {}))
    return time_infer(engine, size, iters, warmup)


def kernel_variants(args):
    return [name for name, (flag, _) in VARIANTS.items() if getattr(args, flag)]


def variant_options(name, compiled=False):
    """The engine options of a row: its variant's, or for ECMNet the engine's defaults (compiled or not)."""
    if name in VARIANTS:
        return VARIANTS[name][1]
    return default_kernel_options(compiled, "cuda") if name == "ECMNet" else {}


def time_infer(engine, size, iters, warmup):
    img = (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)
    for _ in range(warmup):
        engine.infer(img)
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        res = engine.infer(img)
        ms.append((time.perf_counter() - t0) * 1e3)
    assert res.mask.shape == size
    mode = "graph" if engine.uses_cuda_graph(1, *size) else "eager"
    return dict(percentiles(ms), mode=mode)


def profile(model, size, precision, rows=30, channels_last=True):
    """The `rows` GPU kernels that take the most time (none if 0), and kernels + GPU time per forward."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    x = torch.randn(1, 3, *size, device="cuda").to(PRECISIONS[precision]).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with torch.inference_mode():
        for _ in range(10):
            model(x)
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                model(x)
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    if rows:
        by_name = {}
        for e in kernels:
            n, t = by_name.get(e.name, (0, 0.0))
            by_name[e.name] = (n + 1, t + e.device_time)
        print(f"{'us/forward':>10} {'calls/fwd':>9} {'us/call':>8}  GPU kernel (top {rows} by time)")
        for name, (n, t) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:rows]:
            print(f"{t / 10:>10.1f} {n / 10:>9.1f} {t / n:>8.1f}  {name[:150]}")
    gpu_ms = sum(e.device_time for e in kernels) / 1e3
    print(f"per forward: {len(kernels) / 10:.0f} GPU kernels / memcpys, {gpu_ms / 10:.3f} ms of GPU time")


@contextlib.contextmanager
def previous_rewrites():
    """optimize_for_inference as before the fused DDA kernel (2026-11-23): DDA's pooled projections and
    attention as PyTorch ops, EDAB's 1x1 reduction as its own convolution, ECA's Conv1d kept, every
    depthwise convolution (MSAU's 7x7s too) as shifts."""
    from unittest import mock

    from ecmnet_core.inference import modules as rw
    from ecmnet_core.ops.dda import dda_gates_reference

    class PyTorchOpsDDA(rw._FusedDualDirectionAttention):
        def __init__(self, dda):
            super().__init__(dda)
            self.gates = dda_gates_reference

    with mock.patch.multiple(rw, _FusedDualDirectionAttention=PyTorchOpsDDA, _merge_edab_reductions=lambda model: 0,
                             _ChannelAttentionTaps=lambda ca: ca, MAX_SHIFT_TAPS=49,
                             middle_row_conv=lambda conv: conv):
        yield


def check_compiled_engine(compiled, model, meta, size, precision):
    """The compiled engine computes the same masks as the plain one (the rewrite is exact math;
    fp16 rounding differs, so a few near-tie pixels may flip)."""
    img = (np.random.default_rng(1).random((*size, 3)) * 255).astype(np.uint8)
    plain = SegmentationEngine.from_model(model, meta, device="cuda", precision=precision)
    same = np.mean(plain.infer(img).mask == compiled.infer(img).mask)
    print(f"  compiled engine vs plain engine: {same * 100:.3f}% of mask pixels equal")


def compiled_comparison(base, peers, meta, size, prec, backend, args):
    """Best treatment for every model: torch.compile + CUDA graph (ECMNet's depthwise convs as
    shifted multiply-adds, which the compiler fuses; the engine does the same with compile=True)."""
    print(f"compiled: torch.compile(dynamic=False) + CUDA graph, {size[0]}x{size[1]} {prec}, batch 1")
    print(f"{'model':<{W}} {'ss2d':<10} | {'net p50':>8} {'p99':>7} {'FPS':>7} | {'e2e p50':>8} {'p99':>7} "
          f"{'FPS':>7} | compile+warm-up s")
    rows = []
    # peers right after the baseline, the opt-in variants last (most promising first)
    for name in ["ECMNet"] + list(peers) + kernel_variants(args)[::-1]:
        ecm, options = name.startswith("ECMNet"), variant_options(name, compiled=True)
        if ecm:
            src = ECMNet(num_classes=NUM_CLASSES, ss2d_backend=backend).eval()
            src.load_state_dict(base.state_dict())
        else:
            src = peers[name]
        try:
            t0 = time.perf_counter()
            net_model = torch.compile(prepare(copy.deepcopy(src), prec, ecmnet=ecm, shifts=ecm, options=options),
                                      dynamic=False)
            net = time_network(net_model, size, prec, args.iters, args.warmup)
            t1 = time.perf_counter()
            engine_src = src if ecm else peer_engine_source(src)
            engine = SegmentationEngine.from_model(engine_src, meta, device="cuda", precision=prec,
                                                   fold_bn=ecm, compile=True, **options)
            e2e = time_infer(engine, size, args.iters, args.warmup)
            t2 = time.perf_counter()
            if ecm:
                check_compiled_engine(engine, src, meta, size, prec)
                if args.profile:   # the network compiled above: no second compilation
                    print(f"profile: {name}[{backend}] compiled (depthwise as shifts), {size[0]}x{size[1]} {prec}")
                    profile(net_model, size, prec, rows=40)
            del net_model
        except Exception as exc:  # noqa: BLE001 - one failing model must not stop the run
            print(f"{name:<{W}} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
            continue
        rows.append(dict(model=name, backend=backend if ecm else "-", size=list(size), precision=prec,
                         net=net, e2e=e2e, compiled=True))
        print(f"{name:<{W}} {backend if ecm else '-':<10} | {net['p50']:>8.3f} {net['p99']:>7.3f} {net['fps']:>7.1f} | "
              f"{e2e['p50']:>8.3f} {e2e['p99']:>7.3f} {e2e['fps']:>7.1f} | {t1 - t0:.0f} / {t2 - t1:.0f}"
              f"{'' if net['mode'] == 'graph' else '  (net not graphed)'}", flush=True)
        torch.cuda.empty_cache()
    for ecm in (r for r in rows if r["model"].startswith("ECMNet")):
        for r in rows:
            if not r["model"].startswith("ECMNet"):
                print(f"  ratio {ecm['model']}[{backend}]/{r['model']} p50 compiled: net "
                      f"{ecm['net']['p50'] / r['net']['p50']:.2f}, e2e {ecm['e2e']['p50'] / r['e2e']['p50']:.2f}"
                      "  (<1 means ECMNet is faster)")
    print()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes("360x480,1024x1024,1024x2048"))
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--backends", default=None, help="comma list (default: every available except sequential)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma list of peers to time (default: all of {', '.join(PEERS)})")
    ap.add_argument("--no-engine", action="store_true", help="skip the end-to-end engine timings")
    ap.add_argument("--ablation", action="store_true",
                    help="at the largest size / last precision: eager vs folded vs graph vs torch.compile")
    ap.add_argument("--compile-both-layouts", action="store_true",
                    help="ablation: torch.compile for NCHW as well (slow: ~2 min per compiled variant)")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler table at the largest size; with --ablation, kernels per compiled forward")
    ap.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                    help="torch._inductor.config option for every torch.compile of this run, e.g. "
                         "conv_1x1_as_mm=True (repeatable; printed with the results)")
    ap.add_argument("--compiled", action="store_true",
                    help="every model with torch.compile + CUDA graph at the largest size and last precision, "
                         "network and engine (slow: ~1-2 min of compiling per model)")
    ap.add_argument("--channels-last-kernels", action="store_true",
                    help="also time ECMNet with the engine's channels_last_kernels option alone (row ECMNet+k)")
    ap.add_argument("--fused-edab", action="store_true",
                    help="also time ECMNet with channels_last_kernels and fused_edab (row ECMNet+kf; the "
                         "compiled ECMNet row's defaults)")
    ap.add_argument("--without-kernels", action="store_true",
                    help="also time ECMNet with both kernel options off (row ECMNet-k)")
    ap.add_argument("--compiled-only", action="store_true",
                    help="with --compiled: skip the eager/graph table and the eager profile")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    unknown = set(args.peers.split(",")) - set(PEERS)
    if unknown:
        print(f"error: unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: benchmarks/inference.py needs a CUDA GPU", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore", UserWarning)
    for item in args.inductor:
        import ast
        import torch._inductor.config as inductor_config

        key, _, value = item.partition("=")
        setattr(inductor_config, key, ast.literal_eval(value))
        print(f"torch._inductor.config.{key} = {getattr(inductor_config, key)!r}")
    torch.backends.cudnn.benchmark = True
    avail = available_backends()
    backends = args.backends.split(",") if args.backends else [
        b for b, s in avail.items() if s == "ok" and b != "sequential"]
    precisions = args.precisions.split(",")
    print(f"device: {torch.cuda.get_device_name()} | date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} | "
          f"commit {git_commit()} | "
          f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}) | "
          f"python {platform.python_version()}")
    print("SS2D backends: " + ", ".join(f"{k}={v}" for k, v in avail.items()))
    meta = make_metadata(NUM_CLASSES)
    torch.manual_seed(0)
    base = ECMNet(num_classes=NUM_CLASSES).eval()
    peers = {} if args.no_peers else {n: PEERS[n].cls(NUM_CLASSES).eval() for n in args.peers.split(",")}
    print(f"parameters ({NUM_CLASSES} classes): ECMNet {count_parameters(base):,}"
          + "".join(f", {n} {count_parameters(m):,}" for n, m in peers.items()))
    published = [f"{n} {PEERS[n].cityscapes_test_miou:.1f} %"
                 + (f" ({PEERS[n].miou_note})" if PEERS[n].miou_note else "")
                 for n in peers if PEERS[n].cityscapes_test_miou is not None]
    if published:
        print("published Cityscapes test mIoU: " + ", ".join(published))
    print(f"batch 1, {args.iters} timed iterations after {args.warmup} warm-up; latency in ms\n")
    results = []
    hdr = (f"{'model':<{W}} {'ss2d':<10} {'size':>9} {'prec':<4} | {'net p50':>8} {'p99':>7} {'FPS':>7} {'mode':<5} | "
           f"{'e2e p50':>8} {'p99':>7} {'FPS':>7} {'mode':<5}")
    for size in [] if args.compiled_only else args.sizes:
        for prec in precisions:
            print(hdr)
            rows = []
            configs = ([("ECMNet", b) for b in backends]
                       + [(v, b) for v in kernel_variants(args) for b in backends]
                       + [(n, "-") for n in peers])
            for name, backend in configs:
                options = variant_options(name)
                if name.startswith("ECMNet"):
                    model = ECMNet(num_classes=NUM_CLASSES, ss2d_backend=backend).eval()
                    model.load_state_dict(base.state_dict())
                    src = model
                    net_model = prepare(copy.deepcopy(model), prec, ecmnet=True, options=options)
                else:
                    src = peers[name]
                    net_model = prepare(copy.deepcopy(src), prec, ecmnet=False)
                try:
                    net = time_network(net_model, size, prec, args.iters, args.warmup)
                    del net_model
                    e2e = None
                    if not args.no_engine:
                        if name.startswith("ECMNet"):
                            e2e = time_engine(src, meta, size, prec, args.iters, args.warmup, options=options)
                        else:
                            e2e = time_engine(peer_engine_source(src), meta, size, prec, args.iters, args.warmup, fold=False)
                except Exception as exc:  # noqa: BLE001 - a broken backend must not stop the run
                    print(f"{name:<{W}} {backend:<10} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:150]}")
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    continue
                row = dict(model=name, backend=backend, size=list(size), precision=prec, net=net, e2e=e2e)
                rows.append(row)
                e2e_txt = (f"{e2e['p50']:>8.3f} {e2e['p99']:>7.3f} {e2e['fps']:>7.1f} {e2e['mode']:<5}"
                           if e2e else f"{'-':>8} {'-':>7} {'-':>7} {'':<5}")
                print(f"{name:<{W}} {backend:<10} {size[0]:>4}x{size[1]:<4} {prec:<4} | {net['p50']:>8.3f} "
                      f"{net['p99']:>7.3f} {net['fps']:>7.1f} {net['mode']:<5} | {e2e_txt}", flush=True)
                torch.cuda.empty_cache()
            ecm = [r for r in rows if r["model"].startswith("ECMNet")]
            if ecm:
                best = min(ecm, key=lambda r: r["net"]["p50"])
                for r in rows:
                    if r["model"].startswith("ECMNet"):
                        continue
                    net_ratio = best["net"]["p50"] / r["net"]["p50"]
                    txt = f"  ratio {best['model']}[{best['backend']}]/{r['model']} p50: net {net_ratio:.2f}"
                    if best["e2e"] and r["e2e"]:
                        txt += f", e2e {best['e2e']['p50'] / r['e2e']['p50']:.2f}"
                    print(txt + "  (<1 means ECMNet is faster)")
            results += rows
            print()
    largest, prec = max(args.sizes, key=lambda s: s[0] * s[1]), precisions[-1]
    best_backend = min((r for r in results if r["model"] == "ECMNet" and tuple(r["size"]) == largest
                        and r["precision"] == prec), key=lambda r: r["net"]["p50"], default={"backend": backends[0]})
    best_backend = best_backend["backend"]
    if args.profile and not args.compiled_only:
        print(f"profile: ECMNet[{best_backend}] {largest[0]}x{largest[1]} {prec}, BN folded, eager")
        model = ECMNet(num_classes=NUM_CLASSES, ss2d_backend=best_backend).eval()
        profile(prepare(model, prec, ecmnet=True), largest, prec)
    if args.ablation:
        print(f"ablation: ECMNet[{best_backend}] {largest[0]}x{largest[1]} {prec}, network alone")
        model = ECMNet(num_classes=NUM_CLASSES, ss2d_backend=best_backend).eval()
        model.load_state_dict(base.state_dict())
        variants = [("as trained (no folding), eager", dict(fold=False), dict(graphs=False)),
                    ("BN folded + channels_last shuffle, eager", dict(fold=True), dict(graphs=False)),
                    ("BN folded, previous rewrites, CUDA graph", dict(fold=True, previous=True), dict(graphs=True)),
                    ("BN folded, CUDA graph", dict(fold=True), dict(graphs=True)),
                    ("BN folded, NCHW (not channels_last), CUDA graph", dict(fold=True, channels_last=False),
                     dict(graphs=True, channels_last=False))]
        for label, kw, tkw in variants:
            with previous_rewrites() if kw.pop("previous", False) else contextlib.nullcontext():
                m = prepare(copy.deepcopy(model), prec, ecmnet=True, **kw)
            r = time_network(m, largest, prec, args.iters, args.warmup, **tkw)
            print(f"  {label:<58} p50 {r['p50']:.3f}  p99 {r['p99']:.3f}  ({r['mode']})", flush=True)
        # (channels_last, shifts, previous rewrites)
        compiled = [(True, True, True), (True, True, False)]
        if args.compile_both_layouts:
            compiled.append((False, True, False))
        for cl, shifts, previous in compiled:
            try:
                with previous_rewrites() if previous else contextlib.nullcontext():
                    m = prepare(copy.deepcopy(model), prec, ecmnet=True, channels_last=cl, shifts=shifts)
                t0 = time.perf_counter()
                cm = torch.compile(m, dynamic=False)
                r = time_network(cm, largest, prec, args.iters, args.warmup, graphs=True, channels_last=cl)
                label = (f"{'previous' if previous else 'current'} rewrites, {'channels_last' if cl else 'NCHW'}, "
                         f"{'shifts, ' if shifts else ''}compile + graph")
                print(f"  {label:<58} p50 {r['p50']:.3f}  p99 {r['p99']:.3f}  "
                      f"({r['mode']}; compile+warm-up {time.perf_counter() - t0:.0f} s)", flush=True)
                if args.profile:
                    print("    ", end="")
                    profile(cm, largest, prec, rows=0, channels_last=cl)
            except Exception as exc:  # noqa: BLE001
                print(f"  torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}")
        print()
    if args.compiled:
        results += compiled_comparison(base, peers, meta, largest, prec, best_backend, args)
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                         "date": dt.datetime.now(dt.timezone.utc).isoformat(),
                                         "parameters": {"ECMNet": count_parameters(base),
                                                        **{n: count_parameters(m) for n, m in peers.items()}},
                                         "published_cityscapes_test_miou": {
                                             n: PEERS[n].cityscapes_test_miou for n in peers},
                                         "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
