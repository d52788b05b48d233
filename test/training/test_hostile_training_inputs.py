"""Hostile inputs for ecmnet-train, ecmnet-eval and ecmnet-pack-data: one `error:` line, status 2,
nothing written (issue 18). Every case fails before any data is read, so no dataset is needed."""
import pytest
import torch

from test_training_fixtures import REPO
from training.evaluate import main as eval_main
from training.pack import main as pack_main
from training.train import main as train_main

NO_CUDA = not torch.cuda.is_available()
RECIPE = REPO / "config" / "train_camvid.yaml"


@pytest.fixture
def work(tmp_path):
    (tmp_path / "existing.txt").write_text("a file")
    (tmp_path / "garbage.yaml").write_text("dataset: [a, b\n  - :: {{{\n")
    return tmp_path


def _fill(argv, work, ckpt=None):
    return [str(a).format(work=work, file=work / "existing.txt", ckpt=ckpt) for a in argv]


EVAL_CASES = [
    ("device_banana", ["--device", "banana"], "argument --device: invalid choice: 'banana'"),
    ("device_cuda_without_cuda", ["--device", "cuda"], "CUDA is not available"),
    ("batch_size_0", ["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    ("limit_-1", ["--limit", "-1"], "argument --limit: must be >= 1, got -1"),
    ("workers_-1", ["--workers", "-1"], "argument --workers: must be in [0, 256]"),
    ("scales_0", ["--scales", "0"], "argument --scales: must be in [0.1, 4]"),
    ("scales_nan", ["--scales", "1", "nan"], "argument --scales: must be a finite number"),
    ("out_is_a_directory", ["--out", "{work}"], "is a directory; name a file"),
    ("out_under_a_file", ["--out", "{file}/eval.json"], "is not a directory"),
    ("weights_missing", ["--weights", "{work}/nope.pt"], "checkpoint not found"),
]


@pytest.mark.parametrize("case,extra,match", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_hostile_arguments(case, extra, match, work, tiny_checkpoint, run_cli, one_error_line, file_tree):
    if case == "device_cuda_without_cuda" and not NO_CUDA:
        pytest.skip("CUDA present")
    argv = (["--weights", tiny_checkpoint] if "--weights" not in extra else []) + _fill(extra, work)
    before = file_tree(work)
    status, _, err = run_cli(eval_main, argv + ["--layout", "camvid", "--data-root", work / "no_data"])
    one_error_line(status, err, match)
    assert file_tree(work) == before


@pytest.mark.parametrize("case", ["metadata_19_classes", "config_19_weights_11", "no_metadata", "zero_bytes",
                                  "random_bytes", "garbage_yaml"])
def test_eval_bad_checkpoints(case, bad_checkpoints, work, run_cli, one_error_line, file_tree):
    ckpt, match = bad_checkpoints[case]
    before = file_tree(work)
    status, _, err = run_cli(eval_main, ["--weights", ckpt, "--layout", "camvid", "--data-root", work])
    one_error_line(status, err, match)
    assert file_tree(work) == before


TRAIN_CASES = [
    ("device_banana", ["--device", "banana"], "argument --device: invalid choice"),
    ("device_cuda_without_cuda", ["--device", "cuda"], "CUDA is not available"),
    ("epochs_0", ["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    ("batch_size_-2", ["--batch-size", "-2"], "argument --batch-size: must be >= 1"),
    ("lr_negative", ["--lr", "-0.1"], "argument --lr: must be > 0"),
    ("lr_nan", ["--lr", "nan"], "argument --lr: must be a finite number"),
    ("max_minutes_negative", ["--max-minutes", "-5"], "argument --max-minutes: must be >= 0"),
    ("config_missing", ["--config", "{work}/nope.yaml"], "config file not found"),
    ("config_garbage", ["--config", "{work}/garbage.yaml"], "is not valid YAML: expected ',' or ']'"),
    ("set_without_value", ["--set", "optim.lr"], "--set expects key=value"),
    ("set_unknown_key", ["--set", "optim.banana=1"], "unknown config key 'optim.banana'"),
    ("set_bad_yaml", ["--set", "optim.lr=[1,"], "--set optim.lr: cannot parse value"),
    ("out_is_a_file", ["--out", "{file}"], "exists and is not a directory"),
    ("resume_zero_bytes", ["--resume", "{ckpt}"], "is empty (0 bytes)"),
]


@pytest.mark.parametrize("case,extra,match", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_hostile_arguments(case, extra, match, work, bad_checkpoints, run_cli, one_error_line, file_tree):
    if case == "device_cuda_without_cuda" and not NO_CUDA:
        pytest.skip("CUDA present")
    own_recipe = "--config" in extra or "--resume" in extra       # --resume alone reads the checkpoint first
    argv = ([] if own_recipe else ["--config", RECIPE]) + _fill(extra, work, bad_checkpoints["zero_bytes"][0])
    if "--out" not in extra:
        argv += ["--out", work / "run"]
    argv += ["--data-root", work / "no_data"]
    before = file_tree(work)
    status, _, err = run_cli(train_main, argv)
    one_error_line(status, err, match)
    assert file_tree(work) == before


PACK_CASES = [
    ("jpeg_quality_0", ["--jpeg-quality", "0"], "argument --jpeg-quality: must be in [1, 100]"),
    ("jpeg_quality_101", ["--jpeg-quality", "101"], "argument --jpeg-quality: must be in [1, 100]"),
    ("resize_0", ["--resize", "0", "0"], "argument --resize: must be in [16, 8192]"),
    ("max_mib_0", ["--max-mib", "0"], "argument --max-mib: must be > 0"),
    ("layout_banana", ["--layout", "banana"], "argument --layout: invalid choice"),
    ("out_is_a_directory", ["--out", "{work}"], "is a directory; name a file"),
]


@pytest.mark.parametrize("case,extra,match", PACK_CASES, ids=[c[0] for c in PACK_CASES])
def test_pack_hostile_arguments(case, extra, match, work, run_cli, one_error_line, file_tree):
    argv = ([] if "--layout" in extra else ["--layout", "camvid"]) + ["--root", work / "no_data"]
    argv += _fill(extra, work) + ([] if "--out" in extra else ["--out", work / "pack.tar"])
    before = file_tree(work)
    status, _, err = run_cli(pack_main, argv)
    one_error_line(status, err, match)
    assert file_tree(work) == before
