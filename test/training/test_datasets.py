"""Dataset layouts decode to canonical train ids; bad inputs fail with a clear message."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from test_training_fixtures import CS_IDS, make_camvid, make_cityscapes, make_custom, write_png
from training.cityscapes_labels import label_id_to_train_id_lut, train_id_to_label_id
from training.datasets import DatasetError, build_dataset, read_pack
from training.pack import main as pack_main
from training.train import main as train_main


def dcfg(layout, root, **kw):
    return {"layout": layout, "root": str(root), "classes": None, "name": None, "resize_to": None,
            "limit": None, **kw}


def test_cityscapes_table_matches_public_definition():
    lut = label_id_to_train_id_lut()
    # road 7->0, sidewalk 8->1, building 11->2, sky 23->10, person 24->11, car 26->13, bicycle 33->18
    assert [int(lut[i]) for i in (7, 8, 11, 23, 24, 26, 33)] == [0, 1, 2, 10, 11, 13, 18]
    # void, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer -> ignore
    assert all(int(lut[i]) == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30))
    assert sorted(int(v) for v in lut[:34] if v != 255) == list(range(19))
    assert int(lut[34]) == -1 and int(lut[200]) == -1
    inv = train_id_to_label_id()
    assert all(int(lut[inv[t]]) == t for t in range(19))


def test_camvid_void_becomes_ignore(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    ds = build_dataset(dcfg("camvid", root), "train")
    assert len(ds) == 4 and ds.info.num_classes == 11
    raw = ds.items[0].label()
    img, lab = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 48, 64) and lab.shape == (48, 64)
    assert torch.equal(lab == 255, torch.from_numpy(raw == 11))
    assert torch.equal(lab[lab != 255], torch.from_numpy(raw[raw != 11]))


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    ds = build_dataset(dcfg("cityscapes", root), "val")
    assert len(ds) == 2 and ds.info.num_classes == 19
    raw = ds.items[1].label()
    _, lab = ds[1]
    expected = label_id_to_train_id_lut()[raw]
    assert np.array_equal(lab.numpy(), expected.astype(np.uint8))
    assert set(np.unique(raw)) <= set(CS_IDS) and (lab == 255).any()


def test_custom_layout_with_classes_yaml(tmp_path):
    root = make_custom(tmp_path / "road", ignore_index=9)
    ds = build_dataset(dcfg("custom", root), "train")
    assert ds.info.classes == ["road", "lane_marking", "curb", "obstacle"]
    assert ds.info.colors[1] == [255, 255, 255]
    raw = ds.items[0].label()
    _, lab = ds[0]
    assert torch.equal(lab == 255, torch.from_numpy(raw == 9)) and (lab == 255).any()
    assert int(lab[lab != 255].max()) <= 3


def test_missing_dirs_and_unpaired_images(tmp_path):
    with pytest.raises(DatasetError, match="dataset root not found"):
        build_dataset(dcfg("camvid", tmp_path / "nope"), "train")
    root = make_camvid(tmp_path / "camvid")
    with pytest.raises(DatasetError, match=r"CamVid test image folder not found"):
        build_dataset(dcfg("camvid", root), "test")
    (root / "trainannot" / sorted(p.name for p in (root / "train").iterdir())[0]).unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) in .*train have no mask"):
        build_dataset(dcfg("camvid", root), "train")
    cs = tmp_path / "cs"
    (cs / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="gtFine/train"):
        build_dataset(dcfg("cityscapes", cs), "train")
    custom = make_custom(tmp_path / "road")
    dup = custom / "images" / "train" / "sub" / "scene_000.png"
    write_png(dup, np.zeros((40, 56, 3), np.uint8))
    with pytest.raises(DatasetError, match="share the file stem 'scene_000'"):
        build_dataset(dcfg("custom", custom), "train")
    dup.unlink()
    (custom / "classes.yaml").unlink()
    with pytest.raises(DatasetError, match="classes YAML"):
        build_dataset(dcfg("custom", custom), "train")


def test_size_mismatch_and_out_of_range_labels(tmp_path):
    root = make_custom(tmp_path / "road", ignore_index=9)
    write_png(root / "masks" / "train" / "scene_001.png", np.zeros((10, 10), np.uint8))
    bad = np.zeros((40, 56), np.uint8)
    bad[3, 3] = 7                                             # 4 classes + ignore 9: 7 is invalid
    write_png(root / "masks" / "train" / "scene_002.png", bad)
    ds = build_dataset(dcfg("custom", root), "train")
    with pytest.raises(DatasetError, match=r"sizes differ .*scene_001.*image 56x40, mask 10x10"):
        ds[1]
    with pytest.raises(DatasetError, match=r"label values \[7\] out of range .*scene_002.*allowed: 0\.\.3, 9"):
        ds[2]
    (root / "classes.yaml").write_text("names: [a, b]\nignore_index: 1\n")
    with pytest.raises(DatasetError, match="collides with class 'b'"):
        build_dataset(dcfg("custom", root), "train")


def test_train_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    root = make_custom(tmp_path / "road")
    bad = np.full((40, 56), 200, np.uint8)
    write_png(root / "masks" / "train" / "scene_000.png", bad)
    code = train_main(["--config", str(_write_cfg(tmp_path, root)), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: label values [200] out of range") and "Traceback" not in "".join(err)
    assert train_main(["--out", str(tmp_path / "none"), "--resume", "auto"]) == 2
    assert "no " in capsys.readouterr().err


def _write_cfg(tmp_path, root):
    p = tmp_path / "c.yaml"
    p.write_text(f"dataset: {{layout: custom, root: '{root}', workers: 0}}\n"
                 "model: {ss2d_backend: reference}\n"
                 "train: {epochs: 1, batch_size: 2, crop_size: [32, 32], progress: 'off'}\n")
    return p


def test_pack_round_trip(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    out = tmp_path / "cs.tar"
    assert pack_main(["--layout", "cityscapes", "--root", str(root), "--out", str(out)]) == 0
    pack = read_pack(out)
    assert pack["meta"]["dataset"] == "cityscapes" and len(pack["train"]) == 4 and len(pack["val"]) == 2
    src = build_dataset(dcfg("cityscapes", root), "val")
    packed = build_dataset(dcfg("pack", out), "val")
    assert packed.info.classes == src.info.classes
    for i in range(2):                                        # val is stored losslessly
        assert all(torch.equal(a, b) for a, b in zip(src[i], packed[i]))
    tr_src, tr_pack = build_dataset(dcfg("cityscapes", root), "train"), build_dataset(dcfg("pack", out), "train")
    assert torch.equal(tr_src[0][1], tr_pack[0][1])          # labels exact; train images are JPEG
    assert (tr_src[0][0].float() - tr_pack[0][0].float()).abs().mean() < 8     # noisy synthetic pixels
    hist = np.bincount(np.concatenate([tr_src.load_label(i).ravel() for i in range(4)]), minlength=256)[:19]
    assert pack["meta"]["class_counts"]["train"] == hist.tolist()
    assert pack_main(["--layout", "cityscapes", "--root", str(root), "--out", str(tmp_path / "x.tar"),
                      "--max-mib", "0.001"]) == 2
    assert not (tmp_path / "x.tar").exists()


def test_custom_colour_masks(tmp_path):
    root = make_custom(tmp_path / "road", ignore_index=9)
    colors = [[128, 64, 128], [255, 255, 255], [200, 200, 0], [220, 20, 60]]
    (root / "classes.yaml").write_text("names: [road, lane_marking, curb, obstacle]\n"
                                       f"colors: {colors}\nmask_format: color\nignore_colors: [[0, 0, 0]]\n")
    index_ds = build_dataset(dcfg("custom", root), "val")        # masks on disk are still index PNGs
    palette = np.zeros((256, 3), np.uint8)
    palette[:4] = colors
    for i, item in enumerate(index_ds.items):
        lab = cv2.imread(item.where.split(" / ")[1], cv2.IMREAD_UNCHANGED)
        write_png(Path(item.where.split(" / ")[1]), palette[lab])  # index -> colour (9 -> black = ignore)
    ds = build_dataset(dcfg("custom", root), "val")
    _, lab = ds[0]
    expected = cv2.imread(str(root / "masks" / "val" / "scene_000.png"), cv2.IMREAD_COLOR)[..., ::-1]
    assert lab.shape == expected.shape[:2]
    assert torch.equal(lab == 255, torch.from_numpy((expected == 0).all(-1)))
    for c, col in enumerate(colors):
        assert torch.equal(lab == c, torch.from_numpy((expected == col).all(-1)))
    assert ((lab == 255).sum() + sum(int((lab == c).sum()) for c in range(4))) == lab.numel()
    assert any(bool((ds[i][1] == 255).any()) for i in range(2))
    bad = expected.copy()
    bad[0, 0] = [1, 2, 3]
    write_png(root / "masks" / "val" / "scene_001.png", bad)
    with pytest.raises(DatasetError, match=r"colours \[\[1, 2, 3\]\] that are neither"):
        ds[1]


def test_joined_splits_concatenate_items_and_histograms(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    both = build_dataset(dcfg("cityscapes", root), "train+val")
    train, val = build_dataset(dcfg("cityscapes", root), "train"), build_dataset(dcfg("cityscapes", root), "val")
    assert len(both) == len(train) + len(val)
    assert torch.equal(both[len(train)][1], val[0][1])
    out = tmp_path / "cs.tar"
    assert pack_main(["--layout", "cityscapes", "--root", str(root), "--out", str(out)]) == 0
    packed = build_dataset(dcfg("pack", out), "train+val")
    counts = read_pack(out)["meta"]["class_counts"]
    assert packed.info.class_counts == [a + b for a, b in zip(counts["train"], counts["val"])]
    with pytest.raises(DatasetError, match="bad split 'train\\+'"):
        build_dataset(dcfg("cityscapes", root), "train+")
