"""GPU memory goes back once the node drops its engine: what the lifecycle node's cleanup relies on
(test_lifecycle.py checks on CPU that cleanup leaves no reference to the engine or model).
CUDA only: skipped in CI and not run yet (no accelerator time was left when it was written)."""
import gc

import numpy as np
import pytest
import torch

from ecmnet_ros.engine_setup import build_engine, release_cached_memory

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_dropping_the_engine_returns_its_gpu_memory(tiny_checkpoint):
    torch.cuda.synchronize()
    base_alloc, base_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    engine = build_engine(str(tiny_checkpoint), "cuda", "auto", "fp16", (512, 1024))
    for _ in range(3):                         # the CUDA graph is captured on a repeated shape
        engine.infer_batch([np.zeros((512, 1024, 3), np.uint8)] * 2, confidence=True, color=True)
    torch.cuda.synchronize()
    loaded_alloc, loaded_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    assert loaded_reserved > base_reserved + (8 << 20), "the engine should hold GPU memory while loaded"
    del engine
    gc.collect()
    release_cached_memory()
    torch.cuda.synchronize()
    after_alloc, after_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    print(f"allocated {base_alloc >> 20} -> {loaded_alloc >> 20} -> {after_alloc >> 20} MiB; "
          f"reserved {base_reserved >> 20} -> {loaded_reserved >> 20} -> {after_reserved >> 20} MiB")
    assert after_alloc <= base_alloc, "tensors of the dropped engine are still allocated"
    # cached blocks go back to the driver (cuBLAS may keep a small per-stream workspace)
    assert after_reserved - base_reserved < (loaded_reserved - base_reserved) / 2
