"""ecmnet-make-bag + ecmnet-bag-eval round trips on real CamVid val frames (mcap and sqlite3),
and one clear error line for every bad input."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")
from rosbags.highlevel import AnyReader  # noqa: E402

from ecmnet_ros import bag_eval, make_bag  # noqa: E402
from ecmnet_ros.bagio import typestore  # noqa: E402
from ecmnet_ros.conversions import image_to_numpy  # noqa: E402
from ecmnet_ros.engine_setup import build_engine  # noqa: E402


def val_files(camvid_root, n):
    return sorted((camvid_root / "val").glob("*.png"))[:n]


def read_topic(bag: Path, topic: str):
    with AnyReader([bag], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]


def independent_miou(preds, labels, num_classes, ignore):
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for p, lab in zip(preds, labels):
        valid = (lab != ignore) & (lab < num_classes)
        for c in range(num_classes):
            pc, lc = (p == c) & valid, (lab == c) & valid
            inter[c] += np.logical_and(pc, lc).sum()
            union[c] += np.logical_or(pc, lc).sum()
    present = union > 0
    return float(np.mean(inter[present] / union[present]))


def test_mcap_round_trip_with_gt_topic(tmp_path, camvid_root, tiny_checkpoint, capsys):
    bag = tmp_path / "camvid_val"
    assert make_bag.main([str(camvid_root / "val"), "--label-dir", str(camvid_root / "valannot"),
                          "--out", str(bag), "--limit", "3", "--rate", "5"]) == 0
    frames = read_topic(bag, "/camera/image_raw")
    labels = read_topic(bag, "/camera/labels")
    assert len(frames) == len(labels) == 3
    files = val_files(camvid_root, 3)
    first = cv2.cvtColor(cv2.imread(str(files[0])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image_to_numpy(frames[0]), first)
    assert frames[1].header.stamp.nanosec - frames[0].header.stamp.nanosec == 200_000_000
    assert [f.header.stamp for f in frames] == [lab.header.stamp for lab in labels]

    out = tmp_path / "report"
    rc = bag_eval.main([str(bag), "--topic", "/camera/image_raw", "--gt-topic", "/camera/labels", "--out", str(out),
                        "--weights", str(tiny_checkpoint), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    masks = read_topic(out / "masks", "/camera/segmentation/mask")
    colors = read_topic(out / "masks", "/camera/segmentation/color")
    assert len(masks) == len(colors) == 3
    assert [m.header.stamp for m in masks] == [f.header.stamp for f in frames]
    assert all(m.encoding == "mono8" and (m.height, m.width) == (360, 480) for m in masks)
    engine = build_engine(tiny_checkpoint, "cpu", "auto", "fp32", "model")   # as bag-eval's default
    preds = [image_to_numpy(m) for m in masks]
    np.testing.assert_array_equal(preds[0], engine.infer(first).mask)

    gt = [image_to_numpy(lab) for lab in labels]
    assert summary["ground_truth"]["matched_frames"] == 3 and summary["ground_truth"]["match"] == "stamp"
    assert summary["miou"] == pytest.approx(independent_miou(preds, gt, 11, 11), abs=1e-9)
    assert set(summary["per_class_iou"]) == set(engine.classes)
    assert summary["segmented"] == 3 and summary["latency_ms"]["total"]["p50"] > 0
    rows = list(csv.DictReader((out / "latency.csv").open()))
    assert len(rows) == 3 and all(r["status"] == "ok" and r["gt"] == "matched" for r in rows)
    for png in ("latency_hist.png", "latency_timeline.png"):
        assert cv2.imread(str(out / png)) is not None


def test_sqlite3_compressed_round_trip_with_gt_dir(tmp_path, camvid_root, tiny_checkpoint):
    bag = tmp_path / "camvid_sqlite"
    assert make_bag.main([str(camvid_root / "val"), "--out", str(bag), "--limit", "2", "--format", "sqlite3",
                          "--topic", "/cam/image_raw/compressed", "--compression", "png"]) == 0
    assert list(bag.glob("*.db3"))
    # labels named like the images (not stamps): matched by order, sorted name i <-> frame i
    gt_dir = tmp_path / "labels"
    gt_dir.mkdir()
    for f in val_files(camvid_root, 2):
        (gt_dir / f.name).write_bytes((camvid_root / "valannot" / f.name).read_bytes())
    out = tmp_path / "report"
    assert bag_eval.main([str(bag), "--topic", "/cam/image_raw/compressed", "--gt-dir", str(gt_dir), "--out", str(out),
                          "--weights", str(tiny_checkpoint), "--device", "cpu", "--out-format", "sqlite3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ground_truth"]["match"] == "order" and summary["ground_truth"]["matched_frames"] == 2
    assert 0.0 <= summary["miou"] <= 1.0
    masks = read_topic(out / "masks", "/cam/segmentation/mask")
    assert len(masks) == 2 and list((out / "masks").glob("*.db3"))
    engine = build_engine(tiny_checkpoint, "cpu", "auto", "fp32", "model")   # as bag-eval's default
    rgb = cv2.cvtColor(cv2.imread(str(val_files(camvid_root, 1)[0])), cv2.COLOR_BGR2RGB)   # png: lossless
    np.testing.assert_array_equal(image_to_numpy(masks[0]), engine.infer(rgb).mask)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory, camvid_root):
    bag = tmp_path_factory.mktemp("bags") / "one"
    assert make_bag.main([str(camvid_root / "val"), "--label-dir", str(camvid_root / "valannot"),
                          "--out", str(bag), "--limit", "1"]) == 0
    return bag


@pytest.mark.parametrize("case,match", [
    ("missing", "error: no such bag"),
    ("corrupt_file", "error: cannot read bag"),
    ("not_a_bag_dir", "error: cannot read bag"),
    ("unknown_topic", "error: topic /nope is not in the bag; available topics: /camera/image_raw"),
    ("gt_unknown", "error: topic /no_labels is not in the bag"),
    ("gt_dir_missing", "error: ground-truth folder not found"),
    ("bad_resolution", "error: --resolution must be"),
])
def test_bag_eval_bad_input_is_one_clear_line(tmp_path, small_bag, tiny_checkpoint, capsys, case, match):
    bag, extra = small_bag, []
    if case == "missing":
        bag = tmp_path / "nope"
    elif case == "corrupt_file":
        bag = tmp_path / "broken.mcap"
        bag.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 40)
    elif case == "not_a_bag_dir":
        bag = tmp_path / "dir"
        bag.mkdir()
    topic = "/nope" if case == "unknown_topic" else "/camera/image_raw"
    if case == "gt_unknown":
        extra = ["--gt-topic", "/no_labels"]
    elif case == "gt_dir_missing":
        extra = ["--gt-dir", str(tmp_path / "no_labels")]
    elif case == "bad_resolution":
        extra = ["--resolution", "tiny"]
    rc = bag_eval.main([str(bag), "--topic", topic, "--out", str(tmp_path / "out"), "--weights", str(tiny_checkpoint),
                        "--device", "cpu", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and match in err[0], err


def test_make_bag_bad_input(tmp_path, camvid_root, small_bag, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(empty), "--out", str(tmp_path / "a")], "error: no images"),
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "b")], "error: image folder not found"),
        ([str(camvid_root / "val"), "--out", str(small_bag), "--limit", "1"], "already exists"),
        ([str(camvid_root / "val"), "--out", str(tmp_path / "c"), "--label-dir", str(empty), "--limit", "1"],
         "error: no label for image"),
        ([str(camvid_root / "val"), "--out", str(tmp_path / "d"), "--rate", "0"], "error: argument --rate: must be in (0,"),
    ]
    for argv, match in cases:
        assert make_bag.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], (argv, err)
    assert not (tmp_path / "c").exists(), "a failed run must not leave a partial bag"


def test_console_scripts_exit_2(tmp_path):
    exe = Path(sys.executable).parent
    for name, argv in (("ecmnet-bag-eval", [str(tmp_path / "none"), "--topic", "/x", "--out", str(tmp_path / "o")]),
                       ("ecmnet-make-bag", [str(tmp_path / "none"), "--out", str(tmp_path / "b")])):
        cmd = [str(exe / name)] if (exe / name).exists() else \
            [sys.executable, "-m", f"ecmnet_ros.{name.split('-', 1)[1].replace('-', '_')}"]
        res = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
