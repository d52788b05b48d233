"""mIoU / accuracy from the confusion matrix, ENet class weights, and a cross-check with cityscapesScripts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_training_fixtures import make_camvid, write_png
from training.cityscapes_labels import label_id_to_train_id_lut, train_id_to_label_id
from training.class_weights import class_counts, enet_weights
from training.datasets import build_dataset
from training.metrics import ConfusionMatrix, format_table


def test_hand_checked_confusion_matrix():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(pred, target)
    assert cm.mat.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    r = cm.compute(["a", "b", "c", "d"])
    # IoU a = 1/(2+2-1), b = 2/(2+3-2), c = 0/(1+0-0), d = no gt, no prediction -> excluded
    assert r["per_class_iou"]["a"] == pytest.approx(1 / 3)
    assert r["per_class_iou"]["b"] == pytest.approx(2 / 3)
    assert r["per_class_iou"]["c"] == 0.0
    assert math.isnan(r["per_class_iou"]["d"])
    assert r["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert r["pixel_acc"] == pytest.approx(3 / 5) and r["pixels"] == 5
    assert r["mean_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    table = format_table(r)
    assert "mIoU" in table and "33.33" in table and "n/a" in table
    with pytest.raises(ValueError, match="outside 0..3"):
        cm.update(torch.tensor([0]), torch.tensor([7]))


def test_enet_weights_formula():
    w = enet_weights([90, 10, 0])
    assert w == pytest.approx([1 / math.log(1.92), 1 / math.log(1.12), 1 / math.log(1.02)])
    assert w == pytest.approx([1.53298, 8.82382, 50.49834], rel=1e-5)
    with pytest.raises(ValueError, match="no labelled pixels"):
        enet_weights([0, 0])


def test_class_counts_cached_and_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("ECMNET_CACHE", str(tmp_path / "cache"))
    root = make_camvid(tmp_path / "camvid")
    cfg = {"layout": "camvid", "root": str(root), "resize_to": None, "limit": None}
    ds = build_dataset(cfg, "train")
    labels = torch.stack([ds[i][1] for i in range(len(ds))])
    expected = [int((labels == c).sum()) for c in range(11)]
    assert class_counts(ds) == expected
    assert class_counts(ds, preloaded_labels=labels) == expected
    ds2 = build_dataset(cfg, "train")
    monkeypatch.setattr(type(ds2), "load_label", lambda self, i: (_ for _ in ()).throw(AssertionError("recount")))
    assert class_counts(ds2) == expected                      # served from the cache
    assert len(list((tmp_path / "cache" / "class_counts").glob("*.json"))) == 1


def test_miou_matches_cityscapesscripts(tmp_path, monkeypatch):
    cs_eval = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    rng = np.random.default_rng(0)
    lut = label_id_to_train_id_lut()
    to_label_id = train_id_to_label_id()
    ours = ConfusionMatrix(19, 255)
    preds, gts = [], []
    for i in range(3):
        gt_ids = rng.integers(0, 34, (24, 40)).astype(np.uint8)
        gt_ids[:6] = rng.choice([7, 26, 11], size=(6, 40))     # make some classes dominant
        gt_train = lut[gt_ids].astype(np.int64)
        pred_train = np.where(rng.random((24, 40)) < 0.6, np.where(gt_train == 255, 0, gt_train),
                              rng.integers(0, 19, (24, 40)))
        pred_train[0, 0] = 16                                     # 'train' predicted, never in gt rows 0..5
        gt_path = tmp_path / f"city_{i:06d}_000019_gtFine_labelIds.png"
        pred_path = tmp_path / "pred" / f"city_{i:06d}_000019_pred.png"
        write_png(gt_path, gt_ids)
        write_png(pred_path, to_label_id[pred_train])
        gts.append(str(gt_path))
        preds.append(str(pred_path))
        ours.update(torch.from_numpy(pred_train), torch.from_numpy(gt_train))
    args = cs_eval.args
    monkeypatch.setattr(args, "evalInstLevelScore", False)
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "evalLabels", [])
    result = cs_eval.evaluateImgLists(preds, gts, args)
    theirs = result["classScores"]
    mine = ours.compute([n for n in _cs_train_names()])
    compared = 0
    for name, iou in mine["per_class_iou"].items():
        if math.isnan(theirs[name]):
            assert math.isnan(iou), name
        else:
            assert iou == pytest.approx(theirs[name], abs=1e-12), name
            compared += 1
    assert compared == 19
    assert mine["miou"] == pytest.approx(result["averageScoreClasses"], abs=1e-12)


def _cs_train_names():
    from cityscapesscripts.helpers.labels import trainId2label
    return [trainId2label[t].name for t in range(19)]
