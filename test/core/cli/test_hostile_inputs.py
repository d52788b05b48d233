"""Hostile inputs for ecmnet-predict, ecmnet-export and ecmnet-flops (issue 18, items 2-6).

Every case must end with exit status 2, exactly one stderr line starting with `error:`, no
traceback and no output left behind. Cases run in-process through main(argv) (fd-level capture,
so libpng/libjpeg lines would be seen); a few run the real console scripts.
"""
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

from ecmnet_core.cli.export import main as export_main
from ecmnet_core.cli.flops import main as flops_main
from ecmnet_core.cli.predict import main as predict_main

NO_CUDA = not torch.cuda.is_available()

# (case, argv after the image, text the error line must contain); "{out}" is the output dir,
# "{file}" an existing regular file
PREDICT_ARGS = [
    ("device_cuda_without_cuda", ["--device", "cuda"], "CUDA is not available"),
    ("device_cuda_index", ["--device", "cuda:7"], "CUDA" if NO_CUDA else "CUDA device(s)"),
    ("device_banana", ["--device", "banana"], "argument --device: device must be auto, cpu, cuda or cuda:N"),
    ("out_is_a_file", ["--out", "{file}"], "exists and is not a directory"),
    ("out_under_a_file", ["--out", "{file}/sub"], "is not a directory"),
    ("alpha_7", ["--alpha", "7"], "argument --alpha: must be in [0, 1], got 7"),
    ("alpha_negative", ["--alpha", "-0.1"], "argument --alpha: must be in [0, 1]"),
    ("alpha_nan", ["--alpha", "nan"], "argument --alpha: must be a finite number"),
    ("size_100000x100000", ["--size", "100000x100000"], "--size 100000x100000 is 10,000,000,000 pixels, more than"),
    ("size_garbage", ["--size", "big"], "argument --size: size must look like 360x480"),
    ("size_too_small", ["--size", "8x8"], "at least 16x16"),
    ("max_pixels_negative", ["--max-pixels", "-1"], "argument --max-pixels: must be >= 0"),
    ("max_pixels_garbage", ["--max-pixels", "lots"], "argument --max-pixels: expected a pixel count"),
    ("precision_choice", ["--precision", "fp8"], "argument --precision: invalid choice"),
    ("fp16_on_cpu", ["--precision", "fp16"], "needs a CUDA device" if NO_CUDA else None),
    ("backend_banana", ["--backend", "banana"], "unknown SS2D backend 'banana'"),
    ("backend_cuda_without_cuda", ["--backend", "cuda"], "SS2D backend 'cuda' cannot run here" if NO_CUDA else None),
    ("unknown_option", ["--bogus"], "unrecognized arguments: --bogus"),
    ("missing_out", ["--out", None], "the following arguments are required: --out"),
    ("onnx_garbage", ["--weights", "{onnx}"], "is not a readable ONNX file"),
    ("out_empty", ["--out", ""], "argument --out: a path must not be empty"),     # wrote into the current dir
    ("weights_empty", ["--weights", ""], "argument --weights: a path must not be empty"),   # meant: shipped weights
]


@pytest.fixture
def work(tmp_path):
    """A scratch folder holding one existing file; outputs go to work/out."""
    (tmp_path / "existing.txt").write_text("not a directory")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07 not protobuf at all")
    return tmp_path


def _argv(template, image, ckpt, work):
    argv, out = [str(image), "--weights", str(ckpt)], ["--out", str(work / "out")]
    values = dict(file=work / "existing.txt", onnx=work / "garbage.onnx")
    i = 0
    while i < len(template):
        key, value = template[i], template[i + 1] if i + 1 < len(template) else None
        if key == "--out":
            out = [] if value is None else ["--out", value.format(**values)]
            i += 2
        elif key == "--weights":
            argv[2] = value.format(**values)
            i += 2
        else:
            argv.append(key.format(**values))
            i += 1
    return argv + out


@pytest.mark.parametrize("case,template,match", PREDICT_ARGS, ids=[c[0] for c in PREDICT_ARGS])
def test_predict_bad_arguments(case, template, match, work, hostile_images, tiny_checkpoint, run_cli,
                               one_error_line, file_tree):
    if case in ("fp16_on_cpu", "backend_cuda_without_cuda") and not NO_CUDA:
        pytest.skip("CUDA present: fp16 / the cuda backend are valid here")
    before = file_tree(work)
    status, out, err = run_cli(predict_main, _argv(template, hostile_images["_good"][0], tiny_checkpoint, work))
    one_error_line(status, err, match)
    assert file_tree(work) == before, "a failed run left files behind"


@pytest.mark.parametrize("name", ["truncated_png", "truncated_jpeg", "random_bytes", "empty_file",
                                  "png_claims_100000x100000", "png_claims_20000x20000", "real_8000x8000"])
def test_predict_bad_images(name, work, hostile_images, tiny_checkpoint, run_cli, one_error_line, file_tree):
    path, match = hostile_images[name]
    before = file_tree(work)
    status, out, err = run_cli(predict_main, [path, "--weights", tiny_checkpoint, "--out", work / "out"])
    one_error_line(status, err, match)
    assert str(path) in err and out == ""
    assert file_tree(work) == before


def test_predict_never_opens_a_fifo(tmp_path, hostile_images, tiny_checkpoint, run_cli, one_error_line):
    """A FIFO named like an image would block the reader forever: refused as input, ignored in a folder."""
    import os

    os.mkfifo(tmp_path / "cam.png")
    status, _, err = run_cli(predict_main, [tmp_path / "cam.png", "--weights", tiny_checkpoint, "--out", tmp_path / "o"])
    one_error_line(status, err, "is not a regular file or a directory")
    (tmp_path / "a.png").write_bytes(hostile_images["_good"][0].read_bytes())
    status, out, err = run_cli(predict_main, [tmp_path, "--weights", tiny_checkpoint, "--out", tmp_path / "o"])
    assert status == 0 and "wrote 3 files for 1 image(s)" in out, err


def test_predict_8000x8000_passes_the_cap_when_raised(hostile_images, monkeypatch, work, tiny_checkpoint, run_cli):
    """The cap is the only thing in the way: raised, the same image reaches the engine (stubbed
    here: a real 64-megapixel inference needs ~30 GB) at its full size."""
    from ecmnet_core.runtime import engine as engine_mod

    seen = []

    def fake_infer(self, image, confidence=False, color=False):
        seen.append(image.shape)
        raise RuntimeError("stop here")
    monkeypatch.setattr(engine_mod.SegmentationEngine, "infer", fake_infer)
    path, _ = hostile_images["real_8000x8000"]
    with pytest.raises(RuntimeError, match="stop here"):
        predict_main([str(path), "--weights", str(tiny_checkpoint), "--out", str(work / "o"),
                      "--max-pixels", "8000x8000"])
    assert seen == [(8000, 8000, 3)]


@pytest.mark.parametrize("case", ["metadata_19_classes", "config_19_weights_11", "no_metadata", "no_model_config",
                                  "no_state_dict", "metadata_not_a_mapping", "colour_out_of_range", "no_std",
                                  "unknown_config_key", "absurd_config", "extra_weight", "nan_weights",
                                  "future_version", "not_ecmnet", "random_bytes", "zero_bytes", "truncated",
                                  "garbage_yaml", "full_pickle", "directory", "fifo"])
def test_predict_bad_checkpoints(case, bad_checkpoints, hostile_images, work, run_cli, one_error_line, file_tree):
    ckpt, match = bad_checkpoints[case]
    before = file_tree(work)
    status, _, err = run_cli(predict_main, [hostile_images["_good"][0], "--weights", ckpt, "--out", work / "out"])
    one_error_line(status, err, match)
    assert file_tree(work) == before


def test_predict_folder_segments_every_good_image_and_lists_the_bad(tmp_path, hostile_images, tiny_checkpoint,
                                                                    run_cli, one_error_line):
    src = tmp_path / "in"
    src.mkdir()
    good = hostile_images["_good"][0]
    for name in ("a.png", "d.png"):
        (src / name).write_bytes(good.read_bytes())
    (src / "a.jpg").write_bytes(hostile_images["_good"][0].with_suffix(".jpg").read_bytes())   # same stem as a.png
    bad = {"b.png": "truncated_png", "c.png": "png_claims_100000x100000", "e.jpg": "random_bytes",
           "f.png": "real_8000x8000"}
    for name, case in bad.items():
        (src / name).write_bytes(hostile_images[case][0].read_bytes())
    out = tmp_path / "out"
    status, stdout, err = run_cli(predict_main, [src, "--weights", tiny_checkpoint, "--out", out])
    one_error_line(status, err, "4 of 7 images could not be segmented (b.png, c.png, e.jpg and 1 more")
    skipped = [line for line in stdout.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 4 and all(any(name in line for line in skipped) for name in bad)
    assert "wrote 9 files for 3 image(s)" in stdout
    # every good image was segmented, whatever came before or after it; a.png and a.jpg keep apart
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_{kind}.png" for stem in ("a_png", "a_jpg", "d") for kind in ("labels", "mask", "overlay"))
    labels = cv2.imread(str(out / "d_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (48, 64) and labels.max() < 11


def test_predict_folder_of_only_bad_images_writes_nothing(tmp_path, hostile_images, tiny_checkpoint, run_cli,
                                                          one_error_line):
    src = tmp_path / "in"
    src.mkdir()
    for case in ("truncated_png", "random_bytes"):
        path = hostile_images[case][0]
        (src / path.name).write_bytes(path.read_bytes())
    status, stdout, err = run_cli(predict_main, [src, "--weights", tiny_checkpoint, "--out", tmp_path / "o" / "p"])
    one_error_line(status, err, "none of the 2 images")
    assert stdout.count("skipped: ") == 2
    assert not (tmp_path / "o").exists()


EXPORT_ARGS = [
    ("onnx_is_a_directory", ["--onnx", "{dir}.onnx"], "is a directory; name a file"),
    ("onnx_under_a_file", ["--onnx", "{file}/m.onnx"], "is not a directory"),
    ("onnx_suffix", ["--onnx", "{work}/m.pt"], "--onnx must end with .onnx"),
    ("size_100000x100000", ["--size", "100000x100000"], "more than the limit of 8,388,608"),
    ("opset_13", ["--opset", "13"], "argument --opset: must be in [17, "),
    ("opset_99", ["--opset", "99"], "argument --opset: must be in [17, "),
    ("batch_0", ["--batch", "0"], "argument --batch: must be in [1, 1024]"),
    ("max_diff_negative", ["--max-diff", "-1"], "argument --max-diff: must be > 0"),
    ("max_diff_nan", ["--max-diff", "nan"], "argument --max-diff: must be a finite number"),
    ("min_agreement_2", ["--min-agreement", "2"], "argument --min-agreement: must be in [0, 1]"),
    ("cache_dir_is_a_file", ["--cache-dir", "{file}"], "--cache-dir"),
    ("weights_missing", ["--weights", "{work}/nope.pt"], "weights not found"),
    ("aoti_empty", ["--aoti", ""], "argument --aoti: a path must not be empty"),
]


@pytest.mark.parametrize("case,template,match", EXPORT_ARGS, ids=[c[0] for c in EXPORT_ARGS])
def test_export_bad_arguments(case, template, match, work, tiny_checkpoint, run_cli, one_error_line, file_tree):
    (work / "d.onnx").mkdir()
    values = dict(dir=work / "d", file=work / "existing.txt", work=work)
    args = {"--onnx": str(work / "m.onnx"), "--weights": str(tiny_checkpoint), "--size": "32x48"}
    extra = []
    for key, value in zip(template[::2], template[1::2]):
        if key in args:
            args[key] = value.format(**values)
        else:
            extra += [key, value.format(**values)]
    before = file_tree(work)
    status, _, err = run_cli(export_main, [v for kv in args.items() for v in kv] + extra)
    one_error_line(status, err, match)
    assert file_tree(work) == before


@pytest.mark.parametrize("case", ["config_19_weights_11", "metadata_19_classes", "random_bytes", "zero_bytes"])
def test_export_bad_checkpoints(case, bad_checkpoints, work, run_cli, one_error_line, file_tree):
    ckpt, match = bad_checkpoints[case]
    before = file_tree(work)
    status, _, err = run_cli(export_main, ["--onnx", work / "m.onnx", "--weights", ckpt, "--size", "32x48"])
    one_error_line(status, err, match)
    assert file_tree(work) == before


@pytest.mark.parametrize("argv,match", [(["--classes", "0"], "argument --classes: must be in [1, 256]"),
                                        (["--classes", "x"], "expected an integer"),
                                        (["--classes", "300"], "must be in [1, 256]")])
def test_flops_bad_arguments(argv, match, run_cli, one_error_line):
    status, _, err = run_cli(flops_main, argv)
    one_error_line(status, err, match)


# ---------------------------------------------------------------------------- the console scripts
def _script(name, module):
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def test_console_scripts_keep_the_promise(tmp_path, hostile_images, bad_checkpoints, tiny_checkpoint,
                                          one_error_line, file_tree):
    """Real processes: what C libraries, Python warnings and argparse print reaches stderr unfiltered."""
    predict = _script("ecmnet-predict", "ecmnet_core.cli.predict")
    good = hostile_images["_good"][0]
    runs = [
        (predict + [hostile_images["truncated_png"][0], "--weights", tiny_checkpoint, "--out", tmp_path / "o"],
         "corrupt or truncated"),
        (predict + [hostile_images["png_claims_20000x20000"][0], "--weights", tiny_checkpoint, "--out", tmp_path / "o"],
         "more than the limit"),
        (predict + [good, "--weights", tiny_checkpoint, "--out", tmp_path / "o", "--alpha", "7"],
         "argument --alpha"),
        (predict + [good, "--weights", bad_checkpoints["random_bytes"][0], "--out", tmp_path / "o"],
         "is not a readable checkpoint"),
        (_script("ecmnet-export", "ecmnet_core.cli.export")
         + ["--onnx", tmp_path / "m.onnx", "--weights", tiny_checkpoint, "--size", "100000x100000"],
         "more than the limit"),
    ]
    for argv, match in runs:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)
        one_error_line(proc.returncode, proc.stderr, match)
    assert file_tree(tmp_path) == set()


# ---------------------------------------------------------------------------- found by the hostile audit
def _onnx_graph(path, inputs, outputs, channels_out=11, channels_in=3):
    """A small ONNX file with ecmnet-export's metadata (11 CamVid classes) around a 1x1 convolution:
    inputs/outputs are (name, shape) pairs, so each case can lie about what the graph takes or gives."""
    import json

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ecmnet_core.palettes import CAMVID_CLASSES, CAMVID_COLORS
    from ecmnet_core.runtime.checkpoint import make_metadata
    from ecmnet_core.runtime.onnx import METADATA_KEY

    weight = numpy_helper.from_array(np.ones((channels_out, channels_in, 1, 1), np.float32), "W")
    if not inputs:
        nodes = [helper.make_node("Constant", [], ["logits"],
                                  value=numpy_helper.from_array(np.zeros((1, 11, 16, 16), np.float32)))]
    elif len(inputs[0][1]) != 4:
        nodes = [helper.make_node("Identity", ["image"], ["logits"])]
    else:
        nodes = [helper.make_node("Conv", ["image", "W"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              initializer=[weight] if nodes[0].op_type == "Conv" else [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    prop = model.metadata_props.add()
    prop.key = METADATA_KEY
    prop.value = json.dumps(make_metadata(11, CAMVID_CLASSES, CAMVID_COLORS, ignore_index=11, input_size=(16, 16)))
    onnx.save(model, str(path))
    return path


OUT = [("logits", ["N", 11, 16, 16])]
BAD_ONNX_GRAPHS = [
    # case, inputs, outputs, conv output channels, conv input channels, text of the error line
    ("rank_2_input", [("image", [1, 3])], [("logits", [1, 11])], 11, 3, "must take one (batch, 3, H, W) image input"),
    ("no_input", [], [("logits", [1, 11, 16, 16])], 11, 3, "image input, got none"),
    ("four_channel_input", [("image", ["N", 4, 16, 16])], OUT, 11, 4, "got image ['N', 4, 16, 16]"),
    ("two_inputs", [("image", ["N", 3, 16, 16]), ("x", [1])], OUT, 11, 3, "image ['N', 3, 16, 16], x [1]"),
    ("zero_size_input", [("image", ["N", 3, 0, 0])], [("logits", ["N", 11, 0, 0])], 11, 3,
     "input height/width must be positive"),
    ("returns_20_classes_declares_11", [("image", ["N", 3, 16, 16])], OUT, 20, 3,
     "the graph returned float32 of shape (1, 20, 16, 16), expected (1, 11, H, W) logits"),
]


@pytest.mark.parametrize("case,inputs,outputs,c_out,c_in,match", BAD_ONNX_GRAPHS, ids=[c[0] for c in BAD_ONNX_GRAPHS])
def test_predict_onnx_graph_that_does_not_fit(case, inputs, outputs, c_out, c_in, match, work, hostile_images,
                                              run_cli, one_error_line, file_tree):
    """Was an IndexError / onnxruntime InvalidArgument / palette IndexError traceback."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx_path = _onnx_graph(work / "bad.onnx", inputs, outputs, c_out, c_in)
    before = file_tree(work)
    status, _, err = run_cli(predict_main, [hostile_images["_good"][0], "--weights", onnx_path, "--out", work / "o"])
    one_error_line(status, err, match)
    assert file_tree(work) == before


@pytest.mark.parametrize("case,match", [("encrypted_member", "(RuntimeError)"),
                                        ("unknown_compression", "(NotImplementedError)")])
def test_predict_pt2_zip_that_zipfile_cannot_open(case, match, work, hostile_images, run_cli, one_error_line,
                                                  file_tree):
    """A .pt2 whose metadata member is encrypted or uses a compression method zipfile lacks: was a
    RuntimeError / NotImplementedError traceback."""
    import struct
    import zipfile

    from ecmnet_core.runtime.aoti import METADATA_MEMBER

    path = work / "bad.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"pkg/{METADATA_MEMBER}", '{"format": "x"}')
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    if case == "encrypted_member":
        data[local + 6] |= 1
        data[central + 8] |= 1
    else:
        data[local + 8:local + 10] = data[central + 10:central + 12] = struct.pack("<H", 99)
    path.write_bytes(bytes(data))
    before = file_tree(work)
    status, _, err = run_cli(predict_main, [hostile_images["_good"][0], "--weights", path, "--out", work / "o"])
    one_error_line(status, err, f"is not a readable .pt2 package {match}")
    assert file_tree(work) == before


def test_predict_inputs_whose_output_names_collide_keep_apart(tmp_path, hostile_images, tiny_checkpoint, run_cli):
    """a.png, a.PNG and a_png.png all mapped to a_png_*.png: two images' outputs were silently
    overwritten while the run reported 9 files written."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "a.PNG", "a_png.png"):
        (src / name).write_bytes(hostile_images["_good"][0].read_bytes())
    out = tmp_path / "out"
    status, stdout, err = run_cli(predict_main, [src, "--weights", tiny_checkpoint, "--out", out])
    assert status == 0 and "wrote 9 files for 3 image(s)" in stdout, err
    assert len(list(out.iterdir())) == 9


def test_predict_image_name_too_long_for_its_outputs(tmp_path, hostile_images, tiny_checkpoint, run_cli,
                                                     one_error_line, file_tree):
    """A 240-character stem fits the file system, stem_overlay.png (and its temporary name) do not:
    was `error: File name too long: .../.<name>_labels.png.<random>` after the model had loaded,
    with an empty --out folder left behind (and a folder run cut short at that image)."""
    src = tmp_path / "in"
    src.mkdir()
    (src / ("a" * 240 + ".png")).write_bytes(hostile_images["_good"][0].read_bytes())
    (src / "b.png").write_bytes(hostile_images["_good"][0].read_bytes())
    before = file_tree(tmp_path)
    status, _, err = run_cli(predict_main, [src, "--weights", tiny_checkpoint, "--out", tmp_path / "o" / "p"])
    one_error_line(status, err, "1 image name(s) too long for their output files")
    assert file_tree(tmp_path) == before


def test_friendly_main_imports_nothing_before_its_try():
    """Its wrapper imported torch (seconds) outside the try: a Ctrl-C then was a KeyboardInterrupt
    traceback instead of `interrupted`. The wrapper must not need torch at all."""
    code = ("import sys; from ecmnet_core.cli.common import friendly_main; "
            "assert friendly_main(lambda: 0)() == 0; print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_predict_empty_input_path_is_not_the_current_directory(tmp_path, tiny_checkpoint, run_cli, one_error_line,
                                                               monkeypatch, hostile_images):
    """`ecmnet-predict "$IMAGES"` with the variable unset segmented every image in the current folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(hostile_images["_good"][0].read_bytes())
    status, _, err = run_cli(predict_main, ["", "--weights", tiny_checkpoint, "--out", tmp_path / "o"])
    one_error_line(status, err, "argument input: a path must not be empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
