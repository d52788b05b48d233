"""SegmentationEngine: CPU path (the ROS node relies on it), BN folding, onnxruntime runtime,
and on CUDA: CUDA-graph replay == eager, capture fallback, fp16."""
import numpy as np
import pytest
import torch

from ecmnet_core.runtime.checkpoint import load_model
from ecmnet_core.runtime.engine import SegmentationEngine
from ecmnet_core.cli.export import main as export_main

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _image(h=50, w=70, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cpu_engine(tiny_checkpoint):
    return SegmentationEngine(tiny_checkpoint, device="cpu")


def test_cpu_engine_api(cpu_engine):
    res = cpu_engine.infer(_image(), confidence=True, color=True)
    assert res.mask.shape == (50, 70) and res.mask.dtype == np.uint8 and res.mask.max() < 11
    assert res.confidence.shape == (50, 70) and res.confidence.dtype == np.float32
    assert (res.confidence > 1 / 11 - 1e-6).all() and (res.confidence <= 1 + 1e-6).all()
    np.testing.assert_array_equal(res.color, np.asarray(cpu_engine.colors, np.uint8)[res.mask])
    assert cpu_engine.classes[0] == "Sky" and cpu_engine.num_classes == 11
    assert cpu_engine.metadata["dataset"] == "random-init"
    gray = cpu_engine.infer(_image()[:, :, 0])
    assert gray.mask.shape == (50, 70) and gray.confidence is None and gray.color is None
    batch = cpu_engine.infer_batch([_image(seed=1), _image(seed=2)])
    assert len(batch) == 2
    np.testing.assert_array_equal(batch[1].mask, cpu_engine.infer(_image(seed=2)).mask)


def test_engine_matches_plain_model(tiny_checkpoint, cpu_engine):
    model, meta = load_model(tiny_checkpoint)
    img = _image(64, 96, seed=4)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(meta["mean"]).view(1, 3, 1, 1)) / torch.tensor(meta["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x)
    res = cpu_engine.infer(img, confidence=True)
    np.testing.assert_array_equal(res.mask, logits.argmax(1)[0].numpy())
    np.testing.assert_allclose(res.confidence, torch.softmax(logits, 1).amax(1)[0].numpy(), atol=1e-5)


def test_bad_inputs_are_clear(cpu_engine):
    with pytest.raises(TypeError, match="uint8"):
        cpu_engine.infer(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        cpu_engine.infer(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="same size"):
        cpu_engine.infer_batch([_image(), _image(40, 40)])
    with pytest.raises(ValueError, match="precision"):
        SegmentationEngine(None, device="cpu", precision="int3")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        SegmentationEngine(None, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="runtime must be one of"):
        SegmentationEngine(None, device="cpu", runtime="tvm")


@pytest.fixture(scope="module")
def onnx_file(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eng") / "tiny.onnx"
    assert export_main(["--onnx", str(out), "--weights", str(tiny_checkpoint), "--size", "64x96"]) == 0
    return out


def test_onnxruntime_runtime_gives_the_same_masks(tiny_checkpoint, onnx_file):
    torch_engine = SegmentationEngine(tiny_checkpoint, device="cpu", input_size=(64, 96))
    ort_engine = SegmentationEngine(onnx_file, device="cpu")        # runtime picked from .onnx
    assert ort_engine.runtime == "onnxruntime" and ort_engine.input_size == (64, 96)
    assert ort_engine.classes == torch_engine.classes and ort_engine.colors == torch_engine.colors
    for shape in [(64, 96), (50, 70), (120, 160)]:
        img = _image(*shape, seed=sum(shape))
        a = torch_engine.infer(img, confidence=True, color=True)
        b = ort_engine.infer(img, confidence=True, color=True)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.color, b.color)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
    alias = SegmentationEngine(onnx_file, device="cpu", ss2d_backend="onnxruntime")   # ROS `backend:` param
    assert alias.runtime == "onnxruntime"


def test_onnx_runtimes_need_an_onnx_file(tiny_checkpoint):
    with pytest.raises(ValueError, match="needs an ONNX file"):
        SegmentationEngine(tiny_checkpoint, device="cpu", runtime="onnxruntime")
    with pytest.raises(ValueError, match="tensorrt needs a CUDA device|needs an ONNX"):
        SegmentationEngine(tiny_checkpoint, device="cpu", runtime="tensorrt")


# ----------------------------------------------------------------------------- CUDA
@cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_equals_eager(tiny_checkpoint, precision):
    kw = dict(device="cuda", precision=precision, ss2d_backend="export")   # pure torch: capturable
    graph = SegmentationEngine(tiny_checkpoint, cuda_graphs=True, **kw)
    eager = SegmentationEngine(tiny_checkpoint, cuda_graphs=False, **kw)
    for seed, shape in enumerate([(64, 96), (64, 96), (50, 70), (64, 96)]):
        img = _image(*shape, seed=seed)
        a = graph.infer(img, confidence=True, color=True)
        b = eager.infer(img, confidence=True, color=True)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.color, b.color)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
    assert graph.uses_cuda_graph(1, 64, 96, True, True) and graph.uses_cuda_graph(1, 50, 70, True, True)
    assert not eager.uses_cuda_graph(1, 64, 96, True, True)
    # a batch is its own shape; results match single images
    batch = graph.infer_batch([_image(seed=7), _image(seed=8)])
    np.testing.assert_array_equal(batch[1].mask, eager.infer(_image(seed=8)).mask)


@cuda
def test_gpu_fp32_matches_cpu(tiny_checkpoint):
    cpu = SegmentationEngine(tiny_checkpoint, device="cpu")
    gpu = SegmentationEngine(tiny_checkpoint, device="cuda", ss2d_backend="export")
    img = _image(64, 96, seed=11)
    a, b = cpu.infer(img, confidence=True), gpu.infer(img, confidence=True)
    assert (a.mask == b.mask).mean() > 0.99
    np.testing.assert_allclose(a.confidence, b.confidence, atol=2e-3)


@cuda
def test_capture_failure_falls_back_to_eager(tiny_checkpoint):
    engine = SegmentationEngine(tiny_checkpoint, device="cuda", ss2d_backend="export", cuda_graphs=True)
    ref = SegmentationEngine(tiny_checkpoint, device="cuda", ss2d_backend="export", cuda_graphs=False)
    net = engine._network

    def syncing_network(x):          # a host sync is illegal while capturing
        out = net(x)
        if torch.cuda.is_current_stream_capturing():
            out.sum().item()
        return out

    engine._network = syncing_network
    img = _image(64, 96, seed=3)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        res = engine.infer(img)
    assert not engine.uses_cuda_graph(1, 64, 96)
    np.testing.assert_array_equal(res.mask, ref.infer(img).mask)
    np.testing.assert_array_equal(engine.infer(img).mask, res.mask)


@cuda
@pytest.mark.parametrize("backend", ["export", "reference", "cuda"])
def test_gpu_backends_agree(tiny_checkpoint, backend):
    from ecmnet_core.ops.ss2d import available_backends

    status = available_backends().get(backend, "not registered")
    if status != "ok":
        pytest.skip(f"SS2D backend {backend}: {status}")
    base = SegmentationEngine(tiny_checkpoint, device="cuda", ss2d_backend="reference", cuda_graphs=False)
    other = SegmentationEngine(tiny_checkpoint, device="cuda", ss2d_backend=backend, cuda_graphs=True)
    img = _image(96, 128, seed=5)
    x = torch.from_numpy(img).cuda().permute(2, 0, 1)[None]
    torch.testing.assert_close(other.logits(x), base.logits(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(other.infer(img).mask, base.infer(img).mask)
    if backend in ("export", "cuda"):        # these must be capturable (reference indexes with a list)
        assert other.uses_cuda_graph(1, 96, 128)


def test_depthwise_rewrite_follows_compile_on_cuda_only(tiny_checkpoint):
    """compile=True on CUDA brings the shifted-depthwise rewrite (what makes compiling pay);
    on CPU, or when asked explicitly, it follows the argument. No inference here: nothing compiles."""
    from ecmnet_core.inference.modules import _ShiftedDepthwiseConv

    model, meta = load_model(tiny_checkpoint)

    def shifted(engine):
        return sum(isinstance(m, _ShiftedDepthwiseConv) for m in engine.model.modules())

    plain = SegmentationEngine.from_model(model, meta, device="cpu")
    compiled_cpu = SegmentationEngine.from_model(model, meta, device="cpu", compile=True)
    forced = SegmentationEngine.from_model(model, meta, device="cpu", depthwise_as_shifts=True)
    assert shifted(plain) == 0 and shifted(compiled_cpu) == 0 and compiled_cpu.compiled
    assert shifted(forced) > 10
    np.testing.assert_array_equal(forced.infer(_image()).mask, plain.infer(_image()).mask)
    if torch.cuda.is_available():
        assert shifted(SegmentationEngine.from_model(model, meta, device="cuda", compile=True)) > 10


def test_kernel_options_follow_compile_on_cuda_only(tiny_checkpoint, monkeypatch):
    """channels_last_kernels / fused_edab left None: on exactly for compile=True on a CUDA GPU of
    compute capability 8.0+ (fused_edab also needs fold_bn); an explicit value wins. No inference
    here: nothing compiles."""
    from ecmnet_core.inference.fused_edab import FusedEDABStage
    from ecmnet_core.runtime.engine import default_kernel_options
    from ecmnet_core.inference.modules import _KernelResize

    off = dict(channels_last_kernels=False, fused_edab=False)
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
        assert default_kernel_options(True, "cuda") == dict(channels_last_kernels=True, fused_edab=True)
        assert default_kernel_options(True, "cuda:0", fold_bn=False) == dict(channels_last_kernels=True,
                                                                             fused_edab=False)
        for compile_, device in ((False, "cuda"), (True, "cpu"), (False, "cpu")):
            assert default_kernel_options(compile_, device) == off
        m.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))     # Turing: not tried
        assert default_kernel_options(True, "cuda") == off
    if not torch.cuda.is_available():
        assert default_kernel_options(True, "cuda") == off           # no CUDA: off, no error
    model, meta = load_model(tiny_checkpoint)

    def kernels(engine):
        mods = list(engine.model.modules())
        return (sum(isinstance(m, FusedEDABStage) for m in mods), sum(isinstance(m, _KernelResize) for m in mods))

    assert kernels(SegmentationEngine.from_model(model, meta, device="cpu", compile=True)) == (0, 0)
    assert kernels(SegmentationEngine.from_model(model, meta, device="cpu", compile=True, fused_edab=True))[0] > 0
    if torch.cuda.is_available():
        assert kernels(SegmentationEngine.from_model(model, meta, device="cuda")) == (0, 0)
        on = kernels(SegmentationEngine.from_model(model, meta, device="cuda", compile=True))
        assert on[0] > 0 and on[1] == 1
        off = SegmentationEngine.from_model(model, meta, device="cuda", compile=True, channels_last_kernels=False,
                                            fused_edab=False)
        assert kernels(off) == (0, 0)


def test_kernel_options(tiny_checkpoint):
    """channels_last_kernels=True routes depthwise convs and the logits resize through ops.channels_last,
    fused_edab=True wraps every EDAB stage in FusedEDABStage (on CPU both run PyTorch's operators / the
    stages' own modules, so the masks are the plain engine's)."""
    from ecmnet_core.inference.fused_edab import FusedEDABStage
    from ecmnet_core.inference.modules import _KernelDepthwiseConv, _KernelResize

    model, meta = load_model(tiny_checkpoint)
    plain = SegmentationEngine.from_model(model, meta, device="cpu")
    kernels = SegmentationEngine.from_model(model, meta, device="cpu", channels_last_kernels=True, fused_edab=True)
    assert not any(isinstance(m, (_KernelDepthwiseConv, _KernelResize, FusedEDABStage)) for m in plain.model.modules())
    assert sum(isinstance(m, _KernelDepthwiseConv) for m in kernels.model.modules()) > 10
    assert isinstance(kernels.model.resize, _KernelResize)
    assert sum(len(m.stage) for m in kernels.model.modules() if isinstance(m, FusedEDABStage)) == 21
    np.testing.assert_array_equal(kernels.infer(_image()).mask, plain.infer(_image()).mask)


def test_node_engine_setup_runs_onnx_weights(onnx_file, cpu_engine):
    # the node builds its engine through engine_setup; `backend: onnxruntime` + .onnx weights must work
    from ecmnet_ros.engine_setup import backend_name, build_engine, resolution_text

    engine = build_engine(str(onnx_file), "cpu", "onnxruntime", "fp32", "model")
    assert engine.model is None and backend_name(engine) == "export"
    assert resolution_text(engine) != "native"
    img = _image()
    assert engine.infer(img).mask.shape == img.shape[:2]
