"""Training loop on tiny fixtures (CPU): learning in every layout, exact resume, DDP gradients, CLIs."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from ecmnet_core.runtime.checkpoint import load_model, read_checkpoint
from test_training_fixtures import REPO, make_camvid, make_cityscapes, make_custom, tiny_config
from training.augment import random_scale_crop_flip
from training.distributed import DistInfo
from training.evaluate import main as eval_main
from training.trainer import Trainer
from training.train import main as train_main

CPU = torch.device("cpu")
FIXTURES = {"camvid": make_camvid, "cityscapes": make_cityscapes, "custom": make_custom}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ECMNET_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(2)


@pytest.mark.parametrize("layout", ["camvid", "cityscapes", "custom"])
def test_few_iterations_reduce_loss_and_write_checkpoints(layout, tmp_path):
    root = FIXTURES[layout](tmp_path / layout)
    cfg = tiny_config(layout, root, tmp_path / "run", epochs=4, val_every=2)
    if layout == "cityscapes":              # large-dataset path: DataLoader streaming instead of preloading
        cfg["dataset"]["preload"] = "none"
    trainer = Trainer(cfg, tmp_path / "run", DistInfo(), CPU)
    assert trainer.preload == ("none" if layout == "cityscapes" else "cpu")
    result = trainer.fit()
    losses = [h["train_loss"] for h in result["history"]]
    # per-epoch losses of 2 random crops are noisy: compare the later epochs' mean with the first
    assert sum(losses[2:]) / len(losses[2:]) < 0.9 * losses[0], losses
    model, meta = load_model(tmp_path / "run" / "best.pt")
    assert meta["classes"] == trainer.info.classes and meta["colors"] == trainer.info.colors
    assert meta["ignore_index"] == 255 and meta["dataset"] == trainer.info.name
    assert meta["input_size"] == list(trainer.val_ds[0][0].shape[-2:])
    assert 0 <= meta["val_miou"] <= 1 and meta["epoch"] in (2, 4)
    assert meta["train_config"]["optim"]["lr"] == 0.01 and "git_commit" in meta
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert last["train_state"]["epoch"] == 4 and last["train_state"]["global_step"] == 8
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("epoch,step,lr,train_loss")


def test_resume_after_stop_reproduces_uninterrupted_run(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    aug = dict(epochs=3, scale_range=[0.5, 2.0], hflip=True, color_jitter=0.2, val_every=1)
    cfg = tiny_config("camvid", root, tmp_path / "a", **aug)
    cfg["schedule"]["warmup_epochs"] = 1
    full = Trainer(cfg, tmp_path / "a", DistInfo(), CPU).fit()

    cfg_b = copy.deepcopy(cfg)
    cfg_b["train"]["max_minutes"] = 0.0                   # stop after the first epoch, as on a time budget
    first = Trainer(cfg_b, tmp_path / "b", DistInfo(), CPU).fit()
    assert not first["finished"] and first["epoch"] == 1
    torch.manual_seed(1234)                               # disturb global RNG: resume must restore it
    resumed = Trainer(cfg, tmp_path / "b", DistInfo(), CPU, resume=str(tmp_path / "b" / "last.pt")).fit()
    assert resumed["finished"] and [h["epoch"] for h in resumed["history"]] == [2, 3]
    for a, b in zip(full["history"][1:], resumed["history"]):
        assert a["step_losses"] == b["step_losses"]      # bit-exact
        assert a["lr"] == b["lr"] and a["step"] == b["step"]
    sa = read_checkpoint(tmp_path / "a" / "last.pt")
    sb = read_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])
    rows = (tmp_path / "b" / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_augmentation_geometry():
    img = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8).to(torch.uint8)
    lab = torch.arange(48, dtype=torch.uint8).reshape(1, 6, 8).repeat(2, 1, 1)
    x, y = random_scale_crop_flip(img, lab, (6, 8), (1.0, 1.0), hflip=False)
    assert torch.equal(y, lab.long()) and torch.allclose(x * 255, img.float(), atol=1e-3)
    g = torch.Generator().manual_seed(0)
    _, y = random_scale_crop_flip(img, lab, (12, 16), (0.5, 0.5), hflip=True, gen=g)
    assert y.shape == (2, 12, 16) and (y == 255).float().mean() > 0.9   # small image inside a big crop
    _, y = random_scale_crop_flip(img, lab, (6, 8), (1.0, 1.0), hflip=True, gen=torch.Generator().manual_seed(3))
    assert all(torch.equal(y[i], lab[i].long()) or torch.equal(y[i], lab[i].long().flip(-1)) for i in range(2))


def _torchrun(args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_ddp_gloo_gradients_equal_single_process():
    proc = _torchrun(["-m", "training.ddp_check", "--device", "cpu"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "world 2, backend gloo" in out and "-> MATCH" in out
    naive = _torchrun(["-m", "training.ddp_check", "--device", "cpu", "--naive-loss"])
    assert naive.returncode == 1 and "MISMATCH" in naive.stdout, (naive.stdout + naive.stderr)[-3000:]


def test_ddp_gloo_training_and_cli_eval(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=4, n_val=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dataset: {{layout: camvid, root: '{root}', workers: 0}}\n"
                   "model: {ss2d_backend: reference}\n"
                   "train: {epochs: 2, batch_size: 1, crop_size: [32, 32], progress: 'off', val_every: 1}\n"
                   "optim: {lr: 0.01}\nschedule: {warmup_epochs: 0}\n")
    out = tmp_path / "ddp"
    proc = _torchrun(["-m", "training.train", "--config", str(cfg), "--out", str(out), "--device", "cpu"])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "batch 1 x 2 proc" in log and log.count("epoch 2/2") == 1      # rank 0 logs once
    ts = read_checkpoint(out / "last.pt")["train_state"]
    assert ts["world_size"] == 2 and ts["global_step"] == 4               # 4 images / (1 x 2 procs) x 2 epochs
    # the evaluation CLI reproduces the val mIoU stored in best.pt (same data, single scale)
    best = read_checkpoint(out / "best.pt")["metadata"]
    report = tmp_path / "eval.json"
    assert eval_main(["--weights", str(out / "best.pt"), "--out", str(report), "--device", "cpu",
                      "--workers", "0"]) == 0
    res = json.loads(report.read_text())
    assert res["images"] == 2 and res["split"] == "val"
    assert res["miou"] == pytest.approx(best["val_miou"], abs=1e-9)
    assert eval_main(["--weights", str(out / "best.pt"), "--out", str(report), "--device", "cpu",
                      "--workers", "0", "--scales", "0.75", "1.0", "--flip"]) == 0
    assert json.loads(report.read_text())["scales"] == [0.75, 1.0]


def test_train_cli_resume_auto_and_overrides(tmp_path, capsys):
    root = make_custom(tmp_path / "road")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dataset: {{layout: custom, root: '{root}', workers: 0}}\nmodel: {{ss2d_backend: reference}}\n"
                   "train: {epochs: 2, batch_size: 2, crop_size: [32, 32], progress: 'off'}\n")
    out = tmp_path / "run"
    assert train_main(["--config", str(cfg), "--out", str(out), "--max-minutes", "0", "--set", "optim.lr=0.005"]) == 0
    assert "stopped on time budget" in capsys.readouterr().out
    assert train_main(["--out", str(out), "--resume", "auto", "--max-minutes", "5"]) == 0
    text = capsys.readouterr().out
    assert "resumed from" in text and "done: finished; epoch 2" in text
    meta = read_checkpoint(out / "last.pt")["metadata"]
    assert meta["train_config"]["optim"]["lr"] == 0.005 and meta["epoch"] == 2
    assert train_main(["--config", str(cfg), "--set", "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["train_camvid", "train_cityscapes", "train_custom_template"])
def test_shipped_recipes_validate(name):
    from training.config import load_config
    from training.datasets import load_classes_yaml
    cfg = load_config(REPO / "config" / f"{name}.yaml", ["train.epochs=2"])
    assert cfg["train"]["epochs"] == 2 and cfg["loss"]["class_weights"] == "enet"
    if name == "train_cityscapes":
        assert cfg["optim"] == {**cfg["optim"], "name": "sgd", "lr": 0.045, "momentum": 0.9, "weight_decay": 1e-4}
        assert cfg["train"]["batch_size"] == 6 and cfg["train"]["crop_size"] == [1024, 1024]
    if name == "train_camvid":
        assert cfg["optim"]["name"] == "adam" and cfg["optim"]["lr"] == 1e-3 and cfg["optim"]["weight_decay"] == 2e-4
        assert cfg["train"]["batch_size"] == 8 and cfg["train"]["epochs"] == 2
    if name == "train_custom_template":
        info = load_classes_yaml(REPO / cfg["dataset"]["classes"])
        assert info.num_classes == 8 and info.source_ignore == 255


def test_worker_side_data_error_is_one_line(tmp_path, capsys):
    from test_training_fixtures import write_png
    import numpy as np
    root = make_custom(tmp_path / "road")
    write_png(root / "images" / "train" / "scene_003.jpg", np.zeros((20, 20, 3), np.uint8))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dataset: {{layout: custom, root: '{root}', workers: 1, preload: none}}\n"
                   "model: {ss2d_backend: reference}\n"
                   "train: {epochs: 1, batch_size: 2, crop_size: [32, 32], progress: 'off'}\n")
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: image and mask sizes differ for") and "scene_003" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from ecmnet_core.cli.common import UserError
    from training.distributed import init_from_env

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserError, match="LOCAL_RANK 1 has no GPU: 1 CUDA device.*--device cpu"):
        init_from_env("auto")
