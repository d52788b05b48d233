"""Ahead-of-time compiled ECMNet (`torch.export` + AOTInductor `.pt2`): start at full speed.

Why: `torch.compile` pays its compile (minutes) at every start of the node. An AOTInductor package
holds the compiled kernels as a shared library; loading it takes milliseconds. The price is that a
package is native code for one torch build on one kind of device, so it carries the key it was
built for (torch version, device type, CUDA capability) and refuses to load anywhere else with one
line that names the fix, instead of crashing or computing garbage.

The package is a normal AOTInductor `.pt2` zip with one extra member, `<root>/extra/ecmnet.json`:
the class names, colours and normalisation (as in a checkpoint's metadata) plus the input contract.
AOTInductor does not check its inputs (a wrong H x W or memory layout runs and returns garbage), so
`AotiNetwork` checks size, dtype and strides itself and gives the compiled model exactly the layout
it was exported with. The batch axis is dynamic up to `max_batch`; larger batches run in chunks.

Trust: unlike a checkpoint (tensors, loaded with weights_only=True), a package holds a shared library
that loading runs as native code. Load only packages you built or got from someone you trust; the key
check guards against mismatches, not against a malicious file.
"""
from __future__ import annotations

import io
import json
import os
import platform
import warnings
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..utils.atomic import atomic_path
from .checkpoint import CheckpointError, check_metadata
from .export import compare_logits

FORMAT, VERSION = "ecmnet-aoti", 1
METADATA_MEMBER = "extra/ecmnet.json"
MAX_METADATA_BYTES = 1 << 20        # class names and colours: kilobytes; a larger member is not ours
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
PACKAGE_SUFFIX = ".pt2"


# --------------------------------------------------------------------------- the key
def build_key(device: torch.device) -> dict:
    """What a compiled package is native code for: torch build, CPU arch, device type, GPU arch."""
    device = torch.device(device)
    key = {"torch": torch.__version__, "machine": platform.machine(), "device_type": device.type}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        key.update(cuda=torch.version.cuda, capability=f"{major}.{minor}")
    return key


def _describe(key: dict) -> str:
    where = key.get("device_type", "?")
    if where == "cuda":
        where = f"cuda sm_{str(key.get('capability', '?')).replace('.', '')} (CUDA {key.get('cuda')})"
    return f"torch {key.get('torch')} on {key.get('machine')} {where}"


def check_key(built: dict, device: torch.device, path) -> None:
    """CheckpointError (one line) when the package was not built for this torch / device."""
    here = build_key(device)
    if any(built.get(k) != here.get(k) for k in ("torch", "machine", "device_type", "capability", "cuda")):
        raise CheckpointError(f"{path} was compiled for {_describe(built)}; this process has {_describe(here)}: "
                              f"re-create it here with `ecmnet-export --aoti` (or run the .pt checkpoint)")


# --------------------------------------------------------------------------- writing
def export_aoti(model: torch.nn.Module, metadata: dict, out, size: Sequence[int], device: torch.device,
                dtype: torch.dtype = torch.float32, channels_last: Optional[bool] = None,
                max_batch: int = 8, inductor_configs: Optional[dict] = None) -> Path:
    """torch.export `model` (already prepared for inference) at (H, W) with a dynamic batch axis,
    compile it with AOTInductor and write the package with its metadata to `out` (atomic)."""
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cuda"          # the layout the engine runs the network in on GPUs
    layout = "channels_last" if channels_last else "contiguous"
    model = model.eval().to(device=device, dtype=dtype, memory_format=LAYOUTS[layout])
    for p in model.parameters():
        p.requires_grad_(False)
    example = torch.zeros(min(2, max_batch), 3, int(size[0]), int(size[1]), device=device, dtype=dtype)
    example = example.contiguous(memory_format=LAYOUTS[layout])
    dynamic = ({0: torch.export.Dim("batch", min=1, max=int(max_batch))},) if max_batch > 1 else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")        # pytree / tracing deprecation notices are not ours
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    dtype_name = next(k for k, v in DTYPES.items() if v == dtype)
    meta = dict(metadata, format=FORMAT, version=VERSION, key=build_key(device),
                input_size=[int(size[0]), int(size[1])], export_size=[int(size[0]), int(size[1])],
                dtype=dtype_name, layout=layout, max_batch=int(max_batch), num_classes=len(metadata["classes"]))
    with atomic_path(out) as tmp:
        staging = tmp.with_name(tmp.name + PACKAGE_SUFFIX)      # the packager insists on the suffix
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(staging),
                                                     inductor_configs=dict(inductor_configs or {}))
            with zipfile.ZipFile(staging, "a") as archive:
                root = archive.namelist()[0].split("/")[0]
                archive.writestr(f"{root}/{METADATA_MEMBER}", json.dumps(meta))
            os.replace(staging, tmp)
        finally:
            if staging.exists():
                staging.unlink()
    return Path(out)


# --------------------------------------------------------------------------- reading
def read_aoti_metadata(path) -> dict:
    """The package's metadata; CheckpointError (one line) for missing, foreign or broken files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"AOTInductor package not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/" + METADATA_MEMBER)]
            if not names:
                raise CheckpointError(f"{path} has no {METADATA_MEMBER}: not a package made by "
                                      f"`ecmnet-export --aoti`")
            if archive.getinfo(names[0]).file_size > MAX_METADATA_BYTES:
                raise CheckpointError(f"{path}: {METADATA_MEMBER} is over {MAX_METADATA_BYTES} bytes: "
                                      f"not a package made by `ecmnet-export --aoti`")
            meta = json.loads(archive.read(names[0]))
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: a compression method zipfile lacks
        raise CheckpointError(f"{path} is not a readable .pt2 package ({type(exc).__name__})") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: {METADATA_MEMBER} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: {METADATA_MEMBER} is not {FORMAT} metadata")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: package version {meta.get('version')!r}, this ecmnet reads {VERSION}")
    try:
        h, w = (int(v) for v in meta["input_size"])
        assert h >= 1 and w >= 1 and meta["dtype"] in DTYPES and meta["layout"] in LAYOUTS
        assert isinstance(meta["key"], dict) and int(meta["max_batch"]) >= 1
        classes = int(meta["num_classes"])
    except (AssertionError, KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: {METADATA_MEMBER} lacks a valid input_size, dtype, layout, key, "
                              f"max_batch or num_classes") from None
    try:
        return check_metadata(meta, classes)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


class AotiNetwork:
    """Callable: normalised (B, 3, H, W) tensor -> logits, through the compiled package."""

    def __init__(self, path, device: torch.device):
        device = torch.device(device)
        self.metadata = meta = read_aoti_metadata(path)
        check_key(meta["key"], device, path)
        self.input_size = tuple(int(v) for v in meta["input_size"])
        self.input_dtype = DTYPES[meta["dtype"]]
        self.memory_format = LAYOUTS[meta["layout"]]
        self.max_batch = int(meta["max_batch"])
        self.device = device
        index = device.index if device.type == "cuda" and device.index is not None else -1
        try:
            # from memory: the loader insists on a .pt2 name, and the CLI verifies a temporary file
            self._model = torch._inductor.aoti_load_package(io.BytesIO(Path(path).read_bytes()), device_index=index)
        except Exception as exc:  # noqa: BLE001 - the loader's own errors: an unusable package
            text = " ".join(str(exc).split())
            raise CheckpointError(f"cannot load AOTInductor package {path}: {text[:200]}") from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"the AOTInductor package takes (B, 3, {self.input_size[0]}, {self.input_size[1]}), "
                             f"got {tuple(x.shape)}")
        x = x.to(self.device, self.input_dtype).contiguous(memory_format=self.memory_format)
        outs = [self._model(x[i:i + self.max_batch].contiguous(memory_format=self.memory_format))
                for i in range(0, x.shape[0], self.max_batch)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def verify_aoti(reference: torch.nn.Module, path, device: torch.device, batch: int = 2, seed: int = 0) -> dict:
    """Run the eager fp32 reference and the package on the same random images."""
    device = torch.device(device)
    net = AotiNetwork(path, device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *net.input_size, generator=gen)
    reference = reference.float().eval().to(device)
    with torch.inference_mode():
        ref = reference(x.to(device))
        got = net(x.to(device))
    return compare_logits(ref, got)
