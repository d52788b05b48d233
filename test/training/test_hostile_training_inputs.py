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
    ("out_empty", ["--out", ""], "argument --out: a path must not be empty"),     # was: the default path
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
    # config values of the wrong type or range: were TypeError / OverflowError tracebacks, or runs that
    # started with nonsense (1.5 epochs, a 1x2 crop, lr inf) and failed later, leaving a run folder
    ("set_epochs_list", ["--set", "train.epochs=[1]"], "train.epochs must be an integer >= 1, got [1]"),
    ("set_epochs_inf", ["--set", "train.epochs=.inf"], "train.epochs must be an integer >= 1, got inf"),
    ("set_epochs_fraction", ["--set", "train.epochs=1.5"], "train.epochs must be an integer >= 1, got 1.5"),
    ("set_batch_size_mapping", ["--set", "train.batch_size={{a: 1}}"], "train.batch_size must be an integer"),
    ("set_limit_list", ["--set", "dataset.limit=[2]"], "dataset.limit must be an integer >= 1 or null"),
    ("set_scale_range_scalar", ["--set", "train.scale_range=5"], "train.scale_range must be 2 numbers"),
    ("set_crop_1x2", ["--set", "train.crop_size=[1, 2]"], "train.crop_size must be [height, width] with ints >= 16"),
    ("set_crop_nested", ["--set", "train.crop_size=[[1], [2]]"], "train.crop_size must be [height, width]"),
    ("set_lr_inf", ["--set", "optim.lr=.inf"], "optim.lr must be a finite number > 0.0, got inf"),
    ("set_lr_list", ["--set", "optim.lr=[1]"], "optim.lr must be a finite number > 0.0, got [1]"),
    ("set_weight_decay_text", ["--set", "optim.weight_decay=abc"], "optim.weight_decay must be a finite number"),
    ("set_betas_scalar", ["--set", "optim.betas=5"], "optim.betas must be 2 numbers in [0.0, 1.0], got 5"),
    ("set_hflip_text", ["--set", "train.hflip='no'"], "train.hflip must be true or false, got 'no'"),
    ("set_section_scalar", ["--set", "dataset=5"], "dataset must be a mapping of keys, got 5"),
    ("set_key_below_scalar", ["--set", "train.epochs.x=5"], "train.epochs must be an integer >= 1, got {'x': 5}"),
    ("set_eval_scales_scalar", ["--set", "eval.scales=5"], "eval.scales must be a non-empty list of numbers"),
    ("set_eval_batch_size_0", ["--set", "eval.batch_size=0"], "eval.batch_size must be an integer >= 1, got 0"),
    ("set_workers_negative", ["--set", "dataset.workers=-1"], "dataset.workers must be an integer in [0, 256]"),
    ("set_model_widths_text", ["--set", "model.widths=abc"], "model: widths must hold ints in 1..1024"),
    ("set_output_dir_list", ["--set", "output.dir=[a]"], "output.dir must be a non-empty string, got ['a']"),
    ("set_enet_c_1", ["--set", "loss.enet_c=1"], "loss.enet_c must be a finite number > 1.0, got 1"),
    ("set_seed_text", ["--set", "train.seed=abc"], "train.seed must be an integer in [0, 4294967295]"),
    ("set_max_minutes_text", ["--set", "train.max_minutes=soon"], "train.max_minutes must be a finite number"),
    # valid recipe, missing dataset: used to leave run/config.yaml behind
    ("data_root_missing", [], "dataset root not found"),
]


@pytest.mark.parametrize("case,extra,match", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_hostile_arguments(case, extra, match, work, bad_checkpoints, run_cli, one_error_line, file_tree):
    if case == "device_cuda_without_cuda" and not NO_CUDA:
        pytest.skip("CUDA present")
    own_recipe = "--config" in extra or "--resume" in extra       # --resume alone reads the checkpoint first
    argv = ([] if own_recipe else ["--config", RECIPE]) + _fill(extra, work, bad_checkpoints["zero_bytes"][0])
    if "--out" not in extra and not any(e.startswith("output.dir=") for e in extra):
        argv += ["--out", work / "run"]
    argv += ["--data-root", work / "no_data"]
    before = file_tree(work)
    status, _, err = run_cli(train_main, argv)
    one_error_line(status, err, match)
    assert file_tree(work) == before


PACK_CASES = [
    ("splits_empty", ["--splits", " , "], "--splits names no split, got ' , '"),    # wrote a pack of no samples
    ("jpeg_quality_0", ["--jpeg-quality", "0"], "argument --jpeg-quality: must be in [1, 100]"),
    ("jpeg_quality_101", ["--jpeg-quality", "101"], "argument --jpeg-quality: must be in [1, 100]"),
    ("resize_0", ["--resize", "0", "0"], "argument --resize: must be in [16, 8192]"),
    ("max_mib_0", ["--max-mib", "0"], "argument --max-mib: must be > 0"),
    ("layout_banana", ["--layout", "banana"], "argument --layout: invalid choice"),
    ("out_is_a_directory", ["--out", "{work}"], "is a directory; name a file"),
    ("out_empty", ["--out", ""], "argument --out: a path must not be empty"),     # was: the default path
]


@pytest.mark.parametrize("case,extra,match", PACK_CASES, ids=[c[0] for c in PACK_CASES])
def test_pack_hostile_arguments(case, extra, match, work, run_cli, one_error_line, file_tree):
    argv = ([] if "--layout" in extra else ["--layout", "camvid"]) + ["--root", work / "no_data"]
    argv += _fill(extra, work) + ([] if "--out" in extra else ["--out", work / "pack.tar"])
    before = file_tree(work)
    status, _, err = run_cli(pack_main, argv)
    one_error_line(status, err, match)
    assert file_tree(work) == before


# ---------------------------------------------------------------------------- found by the hostile audit
@pytest.mark.parametrize("case,train_config,match", [
    ("list", [1, 2], "stored train_config: the config must be a mapping of keys, got [1, 2]"),
    ("dataset_scalar", {"dataset": 5}, "stored train_config: dataset must be a mapping of keys, got 5"),
    ("limit_list", {"dataset": {"limit": [1]}}, "dataset.limit must be an integer >= 1 or null, got [1]"),
    ("root_list", {"dataset": {"root": [1]}}, "dataset.root must be a non-empty string, got [1]"),
])
def test_eval_checkpoint_with_a_broken_stored_recipe(case, train_config, match, tiny_checkpoint, work, run_cli,
                                                     one_error_line, file_tree):
    """ecmnet-eval reads the dataset section from the checkpoint's metadata.train_config: any file
    can carry one, and a list or wrong-typed key was an AttributeError / TypeError traceback."""
    blob = torch.load(tiny_checkpoint, weights_only=True)
    blob["metadata"]["train_config"] = train_config
    torch.save(blob, work / "recipe.pt")
    before = file_tree(work)
    status, _, err = run_cli(eval_main, ["--weights", work / "recipe.pt", "--out", work / "eval.json"])
    one_error_line(status, err, match)
    assert file_tree(work) == before


def _pack(path, meta=None, members=None, cut=None):
    """A data pack tar (one 16x16 sample per split) with meta.json and the members changed as asked."""
    import io
    import json
    import tarfile

    import cv2
    import numpy as np

    from ecmnet_core.palettes import CAMVID_CLASSES, CAMVID_COLORS
    from training.datasets import PACK_FORMAT

    png = lambda a: cv2.imencode(".png", a)[1].tobytes()          # noqa: E731
    files = {}
    good = {"format": PACK_FORMAT, "version": 1, "dataset": "camvid", "classes": list(CAMVID_CLASSES),
            "colors": [list(c) for c in CAMVID_COLORS], "ignore_index": 255, "splits": {}, "class_counts": {}}
    for split in ("train", "val"):
        entry = {"name": "a", "image": f"{split}/images/a.png", "label": f"{split}/labels/a.png"}
        files[entry["image"]] = png(np.zeros((16, 16, 3), np.uint8))
        files[entry["label"]] = png(np.zeros((16, 16), np.uint8))
        good["splits"][split] = [entry]
        good["class_counts"][split] = [256] + [0] * 10
    files["meta.json"] = meta if isinstance(meta, bytes) else json.dumps(meta(good) if meta else good).encode()
    for name, data in (members or {}).items():
        if data is None:
            files.pop(name)
        else:
            files[name] = data
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    path.write_bytes(data[:cut] if cut else data)
    return path


def _without(key):
    return lambda meta: {k: v for k, v in meta.items() if k != key}


@pytest.mark.parametrize("case,pack,match", [
    ("meta_is_a_list", dict(meta=b"[1, 2]"), "is not an ecmnet data pack (format 'list')"),
    ("meta_not_json", dict(meta=b"{not json"), "meta.json is not valid JSON"),
    ("no_dataset", dict(meta=_without("dataset")), "meta.json has no dataset name"),
    ("no_classes", dict(meta=_without("classes")), "meta.json needs classes"),
    ("no_splits", dict(meta=_without("splits")), "meta.json needs splits"),
    ("member_missing", dict(members={"val/labels/a.png": None}), "names val/labels/a.png (split 'val'), which is "
                                                                 "not in the tar"),
    ("entry_without_label", dict(meta=lambda m: {**m, "splits": {"val": [{"name": "a"}]}}),
     "split 'val' has a sample without name, image and label"),
    ("class_counts_short", dict(meta=lambda m: {**m, "class_counts": {"val": [1]}}),
     "class_counts must give 11 pixel counts per split"),
    ("truncated", dict(cut=3000), "is a damaged data pack tar"),
])
def test_eval_on_a_broken_data_pack(case, pack, match, tiny_checkpoint, work, run_cli, one_error_line, file_tree):
    """Packs are files users move between machines: a pack with a damaged meta.json or tar was a
    KeyError / AttributeError / tarfile.ReadError traceback (ecmnet-train reads them the same way)."""
    path = _pack(work / "data.tar", **pack)
    before = file_tree(work)
    status, _, err = run_cli(eval_main, ["--weights", tiny_checkpoint, "--layout", "pack", "--data-root", path,
                                         "--out", work / "eval.json", "--workers", "0"])
    one_error_line(status, err, match)
    assert file_tree(work) == before


def test_failed_pack_leaves_no_new_folders(work, run_cli, one_error_line, file_tree):
    """--out in folders that do not exist yet: atomic_path made them and left them when the pack failed."""
    (work / "camvid" / "train").mkdir(parents=True)
    (work / "camvid" / "trainannot").mkdir()
    (work / "camvid" / "train" / "a.png").write_bytes(b"no mask for this one")
    before = file_tree(work)
    status, _, err = run_cli(pack_main, ["--layout", "camvid", "--root", work / "camvid", "--splits", "train",
                                         "--out", work / "new" / "deeper" / "pack.tar"])
    one_error_line(status, err, "have no mask")
    assert file_tree(work) == before


def test_train_divergence_is_one_error_line(tmp_path, run_cli, one_error_line):
    """A learning rate that sends the loss to inf was a RuntimeError traceback."""
    from test_training_fixtures import make_camvid

    root = make_camvid(tmp_path / "camvid", n_train=2, n_val=1, size=(32, 32))
    (tmp_path / "r.yaml").write_text("dataset: {layout: camvid, workers: 0, preload: cpu}\nmodel: {ss2d_backend: "
                                     "reference}\ntrain: {epochs: 1, batch_size: 1, crop_size: [32, 32], "
                                     "progress: 'off'}\nschedule: {warmup_epochs: 0}\n")
    status, _, err = run_cli(train_main, ["--config", tmp_path / "r.yaml", "--data-root", root, "--out",
                                          tmp_path / "run", "--lr", "1e30", "--device", "cpu"])
    one_error_line(status, err, "non-finite training loss in epoch 1; lower optim.lr")
