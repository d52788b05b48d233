"""AOTInductor packages (`ecmnet-export --aoti`): compiled once here on the CPU, then loaded by the
engine, the predict CLI and the node's engine builder; refused (one line) when built for another
torch / device, broken, or foreign. The CUDA build of the same path is exercised by the GPU run of
benchmarks/inference.py --aoti (not in this CPU suite)."""
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

from ecmnet_core.cli.export import main as export_main
from ecmnet_core.runtime.aoti import METADATA_MEMBER, AotiNetwork, read_aoti_metadata
from ecmnet_core.runtime.checkpoint import CheckpointError
from ecmnet_core.runtime.engine import SegmentationEngine

SIZE = (64, 96)
MAX_BATCH = 2


@pytest.fixture(scope="module")
def package(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint compiled for this CPU through the CLI (export + verification): minutes."""
    out = tmp_path_factory.mktemp("aoti") / "tiny_cpu.pt2"
    started = time.monotonic()
    status = export_main(["--weights", str(tiny_checkpoint), "--size", f"{SIZE[0]}x{SIZE[1]}", "--aoti", str(out),
                          "--device", "cpu", "--max-batch", str(MAX_BATCH)])
    assert status == 0 and out.is_file()
    print(f"ecmnet-export --aoti (tiny, {SIZE[0]}x{SIZE[1]}, cpu) took {time.monotonic() - started:.0f} s")
    return out


def _rewrite_metadata(src, dst, change):
    """A copy of the package whose ecmnet metadata went through `change(meta)`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("/" + METADATA_MEMBER):
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return dst


def _frames(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_package_metadata_names_its_contract(package):
    meta = read_aoti_metadata(package)
    assert meta["format"] == "ecmnet-aoti" and meta["input_size"] == list(SIZE) and meta["max_batch"] == MAX_BATCH
    assert meta["key"]["torch"] == torch.__version__ and meta["key"]["device_type"] == "cpu"
    assert meta["dtype"] == "float32" and meta["layout"] == "contiguous" and len(meta["classes"]) == 11


def test_engine_on_the_package_gives_the_checkpoint_engine_masks(package, tiny_checkpoint):
    compiled = SegmentationEngine(package, device="cpu")
    plain = SegmentationEngine(tiny_checkpoint, device="cpu", input_size=SIZE)
    assert compiled.runtime == "aoti" and compiled.input_size == SIZE and compiled.classes == plain.classes
    for n, (h, w) in ((1, SIZE), (3, SIZE), (2, (90, 120))):    # 3 > max_batch: chunked; 90x120: resized
        frames = _frames(n, h, w, seed=n)
        got = compiled.infer_batch(frames, confidence=True)
        ref = plain.infer_batch(frames, confidence=True)
        for g, r in zip(got, ref):
            assert g.mask.shape == (h, w)
            assert (g.mask == r.mask).mean() >= 0.999
            np.testing.assert_allclose(g.confidence, r.confidence, atol=1e-4)


def test_the_package_guards_its_input_contract(package):
    net = AotiNetwork(package, torch.device("cpu"))
    x = torch.randn(2, 3, *SIZE)
    with torch.inference_mode():
        ref = net(x)
        # AOTInductor itself would run a channels_last tensor as if it were contiguous (garbage)
        torch.testing.assert_close(net(x.contiguous(memory_format=torch.channels_last)), ref)
        with pytest.raises(ValueError, match=r"takes \(B, 3, 64, 96\)"):
            net(torch.randn(1, 3, 32, 96))


@pytest.mark.parametrize("change,match", [
    (lambda m: m["key"].update(torch="1.0.0"), "was compiled for torch 1.0.0"),
    (lambda m: m["key"].update(device_type="cuda", capability="9.0", cuda="13.0"),
     "cuda sm_90 (CUDA 13.0); this process"),
    (lambda m: m.update(format="something-else"), "is not ecmnet-aoti metadata"),
    (lambda m: m.update(classes=m["classes"][:3]), "names 3 classes but the model predicts 11"),
    (lambda m: m.pop("layout"), "lacks a valid input_size, dtype, layout"),
])
def test_a_package_for_elsewhere_or_with_lying_metadata_is_refused_in_one_line(package, tmp_path, change, match):
    bad = _rewrite_metadata(package, tmp_path / "bad.pt2", change)
    with pytest.raises(CheckpointError, match=re.escape(match)) as info:
        SegmentationEngine(bad, device="cpu")
    assert "\n" not in str(info.value)
    if "compiled for" in match or "sm_90" in match:
        assert "ecmnet-export --aoti" in str(info.value)


def test_foreign_and_broken_files_are_refused(tmp_path, package):
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="is not a readable .pt2 package"):
        SegmentationEngine(garbage, device="cpu")
    foreign = tmp_path / "foreign.pt2"
    with zipfile.ZipFile(package) as zin, zipfile.ZipFile(foreign, "w") as zout:
        for item in zin.infolist():
            if not item.filename.endswith(METADATA_MEMBER):
                zout.writestr(item, zin.read(item.filename))
    with pytest.raises(CheckpointError, match="not a package made by `ecmnet-export --aoti`"):
        SegmentationEngine(foreign, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        SegmentationEngine(tmp_path / "missing.pt2", device="cpu")
    huge = _rewrite_metadata(package, tmp_path / "huge.pt2", lambda m: m.update(padding="x" * (2 << 20)))
    with pytest.raises(CheckpointError, match="is over 1048576 bytes"):
        SegmentationEngine(huge, device="cpu")


def test_predict_cli_runs_the_package_and_refuses_a_mismatch_in_one_line(package, tmp_path, one_error_line):
    import cv2

    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), _frames(1, 90, 120)[0])
    exe = [sys.executable, "-m", "ecmnet_core.cli.predict"]
    ok = subprocess.run(exe + [str(img), "--weights", str(package), "--device", "cpu", "--out", str(tmp_path / "o")],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert any(p.suffix == ".png" for p in (tmp_path / "o").rglob("*"))
    bad = _rewrite_metadata(package, tmp_path / "old.pt2", lambda m: m["key"].update(torch="1.0.0"))
    proc = subprocess.run(exe + [str(img), "--weights", str(bad), "--device", "cpu", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True, timeout=300)
    one_error_line(proc.returncode, proc.stderr, "was compiled for torch 1.0.0")
    assert not (tmp_path / "p").exists()


def test_node_engine_builder_takes_the_package(package):
    from ecmnet_ros.engine_setup import build_engine

    engine = build_engine(str(package), "cpu", "auto", "fp32", "model")
    assert engine.runtime == "aoti" and engine.input_size == SIZE


@pytest.mark.parametrize("argv,match", [
    ([], "nothing to write"),
    (["--aoti", "model.onnx"], "--aoti must end with .pt2"),
    (["--aoti", "m.pt2", "--fp16", "--device", "cpu"], "--fp16 with --aoti needs a CUDA --device"),
    (["--aoti", "m.pt2", "--tensorrt"], "--tensorrt builds from the ONNX file"),
    (["--aoti", "m.pt2", "--max-batch", "0"], "argument --max-batch"),
])
def test_export_cli_aoti_argument_errors(argv, match, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = export_main(["--weights", str(tiny_checkpoint), "--size", "64x96"] + argv)
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_cuda_package_is_refused_where_cuda_is_missing(package, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    bad = _rewrite_metadata(package, tmp_path / "gpu.pt2",
                            lambda m: m["key"].update(device_type="cuda", capability="9.0", cuda="13.0"))
    shutil.copy(bad, tmp_path / "gpu_copy.pt2")
    with pytest.raises(ValueError, match="CUDA is not available"):
        SegmentationEngine(tmp_path / "gpu_copy.pt2", device="cuda")
