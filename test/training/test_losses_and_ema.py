"""OHEM loss and weight EMA (issue 19's "what lifts small nets"): the kept pixels are the hardest
ones, the loss falls back to the weighted CE when everything is kept, the EMA follows its formula,
and a run with both resumes bit-exactly with the EMA in last.pt and the EMA shipped as best.pt."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ecmnet_core.cli.common import UserError
from ecmnet_core.runtime.checkpoint import read_checkpoint
from test_training_fixtures import make_camvid, tiny_config
from training.config import validate
from training.distributed import DistInfo
from training.ema import WeightEma
from training.losses import global_ohem_ce, global_weighted_ce, ohem_keep, pixel_weights
from training.trainer import Trainer

CPU = torch.device("cpu")


def _batch(classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 6, 7, generator=g)
    target = torch.randint(0, classes, (2, 6, 7), generator=g)
    target[0, :2] = 255                                  # ignore pixels
    weight = torch.linspace(0.5, 2.0, classes)
    return logits, target, weight, pixel_weights(weight, classes, CPU)


def test_ohem_keeping_everything_is_the_weighted_ce():
    logits, target, weight, pw = _batch()
    a = global_ohem_ce(logits, target, weight, pw, thresh=1.0, min_kept=1)
    b = global_weighted_ce(logits, target, weight, pw)
    torch.testing.assert_close(a, b)


def test_ohem_keeps_the_hardest_labelled_pixels_and_only_they_get_gradients():
    logits, target, weight, pw = _batch()
    k = 9
    keep = ohem_keep(logits, target, thresh=1e-6, min_kept=k)      # threshold below every probability
    valid = target != 255
    prob = logits.softmax(1).gather(1, target.clamp(max=4).unsqueeze(1)).squeeze(1)
    hardest = prob[valid].sort().values[:k]
    assert int(keep.sum()) == k and not (keep & ~valid).any()
    torch.testing.assert_close(prob[keep].sort().values, hardest)

    x = logits.clone().requires_grad_(True)
    loss = global_ohem_ce(x, target, weight, pw, thresh=1e-6, min_kept=k)
    expected = (F.cross_entropy(logits, target, weight=weight, ignore_index=255, reduction="none")[keep].sum()
                / pw[target][keep].sum()).reshape(1)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    grad_norm = x.grad.abs().sum(1)
    assert (grad_norm[~keep] == 0).all() and (grad_norm[keep] > 0).all()


def test_ohem_threshold_keeps_more_than_min_kept_when_many_pixels_are_hard():
    logits, target, weight, pw = _batch()
    valid = target != 255
    prob = logits.softmax(1).gather(1, target.clamp(max=4).unsqueeze(1)).squeeze(1)
    keep = ohem_keep(logits, target, thresh=0.5, min_kept=1)
    assert torch.equal(keep, valid & (prob <= 0.5)) and int(keep.sum()) > 1


def test_ema_follows_its_warmed_up_formula():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEma(model, decay=0.9)
    expected = None
    for t in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model(torch.randn(4, 3))                     # moves the BN running statistics
        current = {k: v.clone().float() for k, v in model.state_dict().items()}
        if expected is None:
            expected = current
        else:
            d = min(0.9, (1 + t) / (10 + t))
            expected = {k: d * expected[k] + (1 - d) * current[k] for k in current}
        ema.update(model)
    got = ema.module.state_dict()
    for k in ("0.weight", "0.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(got[k], expected[k])
    assert ema.updates == 5 and not any(p.requires_grad for p in ema.module.parameters())


@pytest.mark.parametrize("section,key,value", [
    ("train", "ema_decay", 1.0), ("train", "ema_decay", -0.1), ("train", "ema_decay", "yes"),
    ("loss", "ohem_thresh", 0.0), ("loss", "ohem_thresh", 1.5), ("loss", "ohem_min_kept", 0),
    ("loss", "ohem_min_kept", 2.5)])
def test_bad_ema_and_ohem_settings_are_refused(tmp_path, section, key, value):
    cfg = tiny_config("camvid", tmp_path, tmp_path / "run")
    cfg[section][key] = value
    with pytest.raises(UserError, match=key):
        validate(cfg)


def test_run_with_ema_and_ohem_resumes_exactly_and_ships_the_ema(tmp_path):
    torch.set_num_threads(2)
    root = make_camvid(tmp_path / "camvid")
    cfg = tiny_config("camvid", root, tmp_path / "a", epochs=2, val_every=1, ema_decay=0.5)
    cfg["loss"].update(ohem_thresh=0.7, ohem_min_kept=200)
    full_trainer = Trainer(cfg, tmp_path / "a", DistInfo(), CPU)
    full = full_trainer.fit()

    cfg_b = copy.deepcopy(cfg)
    cfg_b["train"]["max_minutes"] = 0.0                   # stop after epoch 1
    Trainer(cfg_b, tmp_path / "b", DistInfo(), CPU).fit()
    resumed = Trainer(cfg, tmp_path / "b", DistInfo(), CPU, resume=str(tmp_path / "b" / "last.pt")).fit()
    assert full["history"][1]["step_losses"] == resumed["history"][0]["step_losses"]
    assert full["history"][1]["val_miou"] == resumed["history"][0]["val_miou"]     # the EMA is validated

    last_a, last_b = (read_checkpoint(tmp_path / r / "last.pt") for r in "ab")
    ema_a, ema_b = last_a["train_state"]["ema"], last_b["train_state"]["ema"]
    assert ema_a["updates"] == ema_b["updates"] == full_trainer.global_step
    for k, v in ema_a["state_dict"].items():
        assert torch.equal(v, ema_b["state_dict"][k]), k
        assert torch.equal(v, full_trainer.ema.module.state_dict()[k].cpu()), k
    raw = last_a["state_dict"]
    assert any(not torch.equal(raw[k], v) for k, v in ema_a["state_dict"].items() if v.is_floating_point())
    assert last_a["metadata"]["weights"] == "trained"

    best = read_checkpoint(tmp_path / "a" / "best.pt")
    assert best["metadata"]["weights"].startswith("ema (decay 0.5")
    if best["metadata"]["epoch"] == 2:
        assert all(torch.equal(best["state_dict"][k], v) for k, v in ema_a["state_dict"].items())
