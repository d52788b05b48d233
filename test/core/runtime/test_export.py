"""`export` SS2D backend parity, ONNX export + onnxruntime verification, ecmnet-export CLI errors."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from ecmnet_core.cli.export import main as export_main
from ecmnet_core.model import ECMNet
from ecmnet_core.runtime.onnx import METADATA_KEY, OnnxRuntimeNetwork, read_onnx_metadata
from ecmnet_core.ops.ss2d import available_backends, get_scan, ss2d_scan_sequential
from ecmnet_core.ops.ss2d.export import ss2d_scan_export


def _inputs(b, d, n, r, h, w, seed=0, dt_bias_shift=0.0, a_scale=16.0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (rnd(b, d, h, w), rnd(b, 4, r, h, w), rnd(b, 4, n, h, w), rnd(b, 4, n, h, w), rnd(4, d, r),
            rnd(4, d) + dt_bias_shift, -(torch.rand(4, d, n, generator=g) * a_scale + 0.05), rnd(4, d))


@pytest.mark.parametrize("shape", [(2, 8, 4, 2, 5, 7), (1, 16, 16, 4, 1, 1), (1, 6, 3, 2, 1, 9),
                                   (2, 4, 2, 1, 13, 3), (1, 32, 16, 4, 16, 24), (1, 8, 4, 2, 4, 6)])
def test_export_backend_equals_sequential(shape):
    args = _inputs(*shape)
    ref = ss2d_scan_sequential(*args)
    got = ss2d_scan_export(*args)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


def test_export_backend_large_steps_stay_finite():
    # delta ~ 40 and A ~ -16: exp(delta * A) underflows to 0, never overflows
    args = _inputs(1, 8, 4, 2, 6, 11, seed=3, dt_bias_shift=40.0)
    ref = ss2d_scan_sequential(*args)
    got = ss2d_scan_export(*args)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def test_export_backend_keeps_dtype_and_is_registered():
    assert available_backends()["export"] == "ok"
    assert get_scan("export") is ss2d_scan_export
    args = list(_inputs(1, 8, 4, 2, 3, 5))
    args[0] = args[0].half()
    assert ss2d_scan_export(*args).dtype == torch.float16


def test_model_with_export_backend_matches_reference():
    torch.manual_seed(0)
    model = ECMNet(num_classes=5).eval()
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        ref = model(x)
        model.set_ss2d_backend("export")
        got = model(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export_main(["--onnx", str(out), "--weights", str(tiny_checkpoint), "--size", "64x96"]) == 0
    return out


def test_onnx_uses_standard_ops_and_carries_metadata(exported):
    proto = onnx.load(str(exported))
    domains = {n.domain for n in proto.graph.node}
    assert domains <= {"", "ai.onnx"}, f"custom op domains: {domains}"
    assert not {"Loop", "Scan", "If"} & {n.op_type for n in proto.graph.node}
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    assert meta["classes"][0] == "Sky" and len(meta["colors"]) == 11 and meta["export_size"] == [64, 96]
    assert json.loads(props["mean"]) == meta["mean"] and json.loads(props["std"]) == meta["std"]
    assert read_onnx_metadata(exported)["ignore_index"] == 11
    inp = proto.graph.input[0].type.tensor_type.shape.dim
    assert inp[0].dim_param == "batch" and [d.dim_value for d in inp[1:]] == [3, 64, 96]


def test_onnxruntime_matches_pytorch_with_dynamic_batch(exported, tiny_checkpoint):
    from ecmnet_core.runtime.checkpoint import load_model

    model, _ = load_model(tiny_checkpoint)
    net = OnnxRuntimeNetwork(exported, torch.device("cpu"))
    x = torch.randn(3, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = model(x)
    got = net(x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-4
    assert torch.equal(got.argmax(1), ref.argmax(1))


def test_verification_failure_is_loud_and_leaves_no_file(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """onnxruntime disagreeing with PyTorch (forced here: the real graphs agree) fails the export: no
    new file, and an older file at --onnx survives untouched; only the verified file replaces it."""
    from ecmnet_core.cli import export as export_cli

    real_verify = export_cli.verify_onnx
    monkeypatch.setattr(export_cli, "verify_onnx", lambda *a, **k: dict(real_verify(*a, **k), mask_agreement=0.5))
    out = tmp_path / "m.onnx"
    code = export_main(["--onnx", str(out), "--weights", str(tiny_checkpoint), "--size", "32x48"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ONNX verification failed"), err
    assert not out.exists() and not list(tmp_path.iterdir())
    out.write_bytes(b"older export")
    assert export_main(["--onnx", str(out), "--weights", str(tiny_checkpoint), "--size", "32x48"]) == 2
    assert out.read_bytes() == b"older export" and sorted(tmp_path.iterdir()) == [out]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ecmnet_core.cli.export", *args], capture_output=True, text=True)


def test_cli_bad_size_is_clear(tmp_path, tiny_checkpoint):
    proc = _cli("--onnx", str(tmp_path / "m.onnx"), "--weights", str(tiny_checkpoint), "--size", "big")
    assert proc.returncode == 2
    assert "size must look like 360x480 (HxW), got 'big'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("--onnx", str(tmp_path / "m.onnx"), "--weights", str(tiny_checkpoint), "--size", "8x8")
    assert proc.returncode == 2 and "at least 16x16" in proc.stderr


def test_cli_missing_weights_and_bad_options_are_one_line(tmp_path, tiny_checkpoint):
    proc = _cli("--onnx", str(tmp_path / "m.onnx"), "--weights", str(tmp_path / "nope.pt"), "--size", "64x96")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: weights not found: {tmp_path / 'nope.pt'}"
    proc = _cli("--onnx", str(tmp_path / "m.onnx"), "--weights", str(tiny_checkpoint), "--size", "64x96",
                "--opset", "13")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: argument --opset: must be in [17, ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()


def test_cli_tensorrt_missing_names_what_is_missing(tmp_path, tiny_checkpoint):
    try:
        import tensorrt  # noqa: F401
        if torch.cuda.is_available():
            pytest.skip("TensorRT and CUDA are installed here")
    except ImportError:
        pass
    proc = _cli("--onnx", str(tmp_path / "m.onnx"), "--weights", str(tiny_checkpoint), "--size", "64x96",
                "--tensorrt")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: TensorRT runtime needs") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()     # checked before the slow export
