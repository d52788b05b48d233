"""Hostile inputs for ecmnet-make-bag and ecmnet-bag-eval (issue 18, items 2-6).

Every case: exit status 2, exactly one stderr line `error: ...`, no traceback, and nothing left
behind (no empty output bag, no partial report). Bags are built from small synthetic frames so the
module needs no dataset; a few cases run the real console scripts.
"""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("rosbags")

from ecmnet_ros import bag_eval, bagio, make_bag  # noqa: E402
from ecmnet_ros.conversions import encode_compressed, image_fields  # noqa: E402
from ecmnet_ros.topics import full_topic_name, full_topic_name_problem  # noqa: E402

NO_CUDA = not torch.cuda.is_available()
FRAME = (48, 64)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(d / f"f{i}.png"), (rng.random((*FRAME, 3)) * 255).astype(np.uint8))
    return d


@pytest.fixture(scope="module")
def bags(tmp_path_factory, frames_dir):
    """Small bags: 3 good frames; compressed frames that are all undecodable; frames over the default
    cap (raw and compressed); bad, good, bad compressed frames; a topic without messages."""
    root = tmp_path_factory.mktemp("bags")
    assert make_bag.main([str(frames_dir), "--out", str(root / "good")]) == 0
    rgb = cv2.cvtColor(cv2.imread(str(frames_dir / "f0.png")), cv2.COLOR_BGR2RGB)
    _, jpeg = encode_compressed(rgb, "jpeg")
    _, png = encode_compressed(rgb, "png")
    big = np.zeros((4096, 2049, 3), np.uint8)                 # 1 px wider than the default cap allows
    with bagio.bag_writer(root / "bad_frames") as (writer, ts):
        c = writer.add_connection("/cam/image_raw/compressed", bagio.COMPRESSED, typestore=ts)
        for i, data in enumerate((jpeg[: len(jpeg) // 2], png[: len(png) // 2], b"garbage")):
            msg = bagio.compressed(ts, bagio.header(ts, 1_000_000_000 + i, "cam"), "jpeg", data)
            writer.write(c, 1_000_000_000 + i, ts.serialize_cdr(msg, bagio.COMPRESSED))
    _, bomb = encode_compressed(np.zeros((4096, 4096, 3), np.uint8), "png")   # 16.8 MP behind 50 kB
    with bagio.bag_writer(root / "oversize") as (writer, ts):
        c = writer.add_connection("/cam/image_raw", bagio.IMAGE, typestore=ts)
        msg = bagio.image(ts, bagio.header(ts, 1_000_000_000, "cam"), image_fields(big, "rgb8"))
        writer.write(c, 1_000_000_000, ts.serialize_cdr(msg, bagio.IMAGE))
        c2 = writer.add_connection("/cam2/image_raw/compressed", bagio.COMPRESSED, typestore=ts)
        msg = bagio.compressed(ts, bagio.header(ts, 1_000_000_000, "cam2"), "png", bomb)
        writer.write(c2, 1_000_000_000, ts.serialize_cdr(msg, bagio.COMPRESSED))
    with bagio.bag_writer(root / "mixed") as (writer, ts):      # bad, good, bad
        c = writer.add_connection("/cam/image_raw/compressed", bagio.COMPRESSED, typestore=ts)
        for i, (fmt, data) in enumerate((("jpeg", jpeg[: len(jpeg) // 2]), ("jpeg", jpeg), ("png", bomb))):
            msg = bagio.compressed(ts, bagio.header(ts, 1_000_000_000 + i, "cam"), fmt, data)
            writer.write(c, 1_000_000_000 + i, ts.serialize_cdr(msg, bagio.COMPRESSED))
    with bagio.bag_writer(root / "empty_topic") as (writer, ts):
        writer.add_connection("/cam/image_raw", bagio.IMAGE, typestore=ts)
    return root


def _no_files_left(path: Path, before: set, file_tree):
    assert file_tree(path) == before, f"left behind: {file_tree(path) - before}"


# ------------------------------------------------------------------------------------ ecmnet-bag-eval
BAG_EVAL_CASES = [
    # case, bag, topic, extra argv, text of the error line
    ("limit_-2", "good", "/camera/image_raw", ["--limit", "-2"], "argument --limit: must be >= 0, got -2"),
    ("device_banana", "good", "/camera/image_raw", ["--device", "banana"], "argument --device: device must be"),
    ("device_cuda_without_cuda", "good", "/camera/image_raw", ["--device", "cuda"], "CUDA is not available"),
    ("out_is_a_file", "good", "/camera/image_raw", ["--out", "{file}"], "exists and is not a directory"),
    ("out_under_a_file", "good", "/camera/image_raw", ["--out", "{file}/report"], "is not a directory"),
    ("resolution_100000x100000", "good", "/camera/image_raw", ["--resolution", "100000x100000"],
     "--resolution 100000x100000 is 10,000,000,000 pixels, more than the limit of 8,388,608"),
    ("cap_below_model_size", "good", "/camera/image_raw", ["--max-pixels", "1000"],
     "network input size 64x96 = 6,144 pixels is more than the limit of 1,000 (--max-pixels)"),
    ("max_pixels_garbage", "good", "/camera/image_raw", ["--max-pixels", "many"], "argument --max-pixels"),
    ("all_frames_oversize", "good", "/camera/image_raw", ["--max-pixels", "1000", "--resolution", "native"],
     "no frame of /camera/image_raw could be segmented (3 read, all bad; first: frame 0 on /camera/image_raw: "
     "image is 64x48 = 3,072 pixels, more than the limit of 1,000 (--max-pixels))"),
    ("giant_frame_default_cap", "oversize", "/cam/image_raw", [],
     "image is 2049x4096 = 8,392,704 pixels, more than the limit of 8,388,608"),
    ("compressed_bomb_default_cap", "oversize", "/cam2/image_raw/compressed", [],
     "4096x4096 (16,777,216 pixels), more than the limit of 8,388,608"),
    ("all_frames_undecodable", "bad_frames", "/cam/image_raw/compressed", [],
     "no frame of /cam/image_raw/compressed could be segmented (3 read, all bad; first: frame 0"),
    ("topic_without_messages", "empty_topic", "/cam/image_raw", [], "the topic has no messages"),
    ("unknown_topic", "good", "/nope", [], "topic /nope is not in the bag"),
    ("bad_resolution", "good", "/camera/image_raw", ["--resolution", "tiny"], "--resolution must be"),
    ("gt_dir_missing", "good", "/camera/image_raw", ["--gt-dir", "{work}/no_labels"], "ground-truth folder not found"),
    ("missing_topic_option", "good", None, [], "the following arguments are required: --topic"),
    ("out_empty", "good", "/camera/image_raw", ["--out", ""], "argument --out: a path must not be empty"),
    ("weights_empty", "good", "/camera/image_raw", ["--weights", ""], "argument --weights: a path must not be empty"),
]


@pytest.mark.parametrize("case,bag,topic,extra,match", BAG_EVAL_CASES, ids=[c[0] for c in BAG_EVAL_CASES])
def test_bag_eval_hostile_inputs(case, bag, topic, extra, match, bags, tmp_path, tiny_checkpoint, run_cli,
                                 one_error_line, file_tree):
    if case == "device_cuda_without_cuda" and not NO_CUDA:
        pytest.skip("CUDA present")
    (tmp_path / "existing.txt").write_text("a file")
    values = dict(file=tmp_path / "existing.txt", work=tmp_path)
    argv = [bags / bag] + (["--topic", topic] if topic else []) + ["--weights", tiny_checkpoint]
    extra = [e.format(**values) for e in extra]
    if "--out" not in extra:
        argv += ["--out", tmp_path / "report"]
    before = file_tree(tmp_path)
    status, _, err = run_cli(bag_eval.main, argv + extra)
    one_error_line(status, err, match)
    _no_files_left(tmp_path, before, file_tree)


@pytest.mark.parametrize("case", ["metadata_19_classes", "config_19_weights_11", "no_metadata", "random_bytes",
                                  "zero_bytes", "garbage_yaml", "truncated"])
def test_bag_eval_bad_checkpoints(case, bad_checkpoints, bags, tmp_path, run_cli, one_error_line, file_tree):
    ckpt, match = bad_checkpoints[case]
    status, _, err = run_cli(bag_eval.main, [bags / "good", "--topic", "/camera/image_raw", "--weights", ckpt,
                                             "--out", tmp_path / "report"])
    one_error_line(status, err, match)
    assert file_tree(tmp_path) == set()


def test_failed_run_leaves_an_existing_report_folder_as_it_was(bags, tmp_path, tiny_checkpoint, run_cli,
                                                              one_error_line, file_tree):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("user's")
    before = file_tree(tmp_path)
    status, _, err = run_cli(bag_eval.main, [bags / "bad_frames", "--topic", "/cam/image_raw/compressed",
                                             "--weights", tiny_checkpoint, "--out", out])
    one_error_line(status, err, "could be segmented (3 read, all bad")
    _no_files_left(tmp_path, before, file_tree)
    # the same folder then receives a complete report, the user's file untouched
    status, stdout, err = run_cli(bag_eval.main, [bags / "good", "--topic", "/camera/image_raw",
                                                  "--weights", tiny_checkpoint, "--out", out])
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["latency.csv", "latency_hist.png", "latency_timeline.png",
                                                     "masks", "notes.txt", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    # a second run into the same folder refuses to overwrite the output bag, before doing any work
    before = file_tree(tmp_path)
    status, _, err = run_cli(bag_eval.main, [bags / "good", "--topic", "/camera/image_raw",
                                             "--weights", tiny_checkpoint, "--out", out])
    one_error_line(status, err, "masks already exists")
    _no_files_left(tmp_path, before, file_tree)


def test_some_bad_frames_are_warnings_and_the_rest_is_segmented(bags, tmp_path, tiny_checkpoint, run_cli):
    """Frames over the cap are bad frames like undecodable ones: skipped, counted, reported; the
    warning held back before the first good frame is shown once one succeeded."""
    import csv

    out = tmp_path / "r"
    status, stdout, err = run_cli(bag_eval.main, [bags / "mixed", "--topic", "/cam/image_raw/compressed",
                                                  "--weights", tiny_checkpoint, "--out", out])
    assert status == 0, err
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: frame 0 ") and "corrupt or truncated" in lines[0]
    assert lines[1].startswith("warning: frame 2 ") and "4096x4096 (16,777,216 pixels), more than" in lines[1]
    assert "segmented 1/3 frames" in stdout
    rows = list(csv.DictReader((out / "latency.csv").open()))
    assert [r["status"][:9] for r in rows] == ["bad image", "ok", "bad image"]


# ------------------------------------------------------------------------------------ ecmnet-make-bag
MAKE_BAG_CASES = [
    ("limit_-3", ["--limit", "-3"], "argument --limit: must be >= 0, got -3"),
    ("topic_with_spaces", ["--topic", "bad topic!!"], "argument --topic: topic 'bad topic!!' is not a valid ROS 2 "
                                                      "topic name: it may contain only letters, digits, '_' and '/'"),
    ("topic_token_digit", ["--topic", "/cam/1image"], "no part of it may start with a digit"),
    ("topic_double_slash", ["--topic", "/cam//image"], "must not contain '//'"),
    ("topic_trailing_slash", ["--topic", "/cam/image/"], "must not end with '/'"),
    ("topic_tilde", ["--topic", "~/image"], "not a valid ROS 2 topic name"),
    ("label_topic_bad", ["--label-topic", "labels-v2"], "argument --label-topic"),
    ("rate_0", ["--rate", "0"], "argument --rate: must be in (0, 1000000], got 0"),
    ("rate_negative", ["--rate", "-5"], "argument --rate: must be in (0, 1000000]"),
    ("rate_nan", ["--rate", "nan"], "argument --rate: must be a finite number"),
    ("rate_inf", ["--rate", "inf"], "argument --rate: must be a finite number"),
    ("start_negative", ["--start", "-1"], "argument --start: must be in [0, 2147483647]"),
    ("stamps_overflow_int32", ["--rate", "1e-9"], "does not fit a ROS time"),
    ("out_exists_as_file", ["--out", "{file}"], "already exists"),
    ("out_under_a_file", ["--out", "{file}/bag"], "is not a directory"),
    ("max_pixels_negative", ["--max-pixels", "-1"], "argument --max-pixels: must be >= 0"),
    ("image_over_cap", ["--max-pixels", "100"], "more than the limit of 100 (--max-pixels)"),
    ("format_choice", ["--format", "rosbag1"], "argument --format: invalid choice"),
    ("label_dir_empty", ["--label-dir", ""], "argument --label-dir: a path must not be empty"),
]


@pytest.mark.parametrize("case,extra,match", MAKE_BAG_CASES, ids=[c[0] for c in MAKE_BAG_CASES])
def test_make_bag_hostile_inputs(case, extra, match, frames_dir, tmp_path, run_cli, one_error_line, file_tree):
    (tmp_path / "existing.txt").write_text("a file")
    extra = [e.format(file=tmp_path / "existing.txt") for e in extra]
    argv = [frames_dir] + ([] if "--out" in extra else ["--out", tmp_path / "bag"]) + extra
    before = file_tree(tmp_path)
    status, _, err = run_cli(make_bag.main, argv)
    one_error_line(status, err, match)
    _no_files_left(tmp_path, before, file_tree)


@pytest.mark.parametrize("image", ["truncated_png", "png_claims_20000x20000", "real_8000x8000"])
def test_make_bag_bad_image_in_the_folder_leaves_no_bag(image, hostile_images, frames_dir, tmp_path, run_cli,
                                                       one_error_line, file_tree):
    src = tmp_path / "in"
    src.mkdir()
    for f in frames_dir.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / "f1.png").write_bytes(hostile_images[image][0].read_bytes())     # the middle frame
    before = file_tree(tmp_path)
    status, _, err = run_cli(make_bag.main, [src, "--out", tmp_path / "bag"])
    one_error_line(status, err, hostile_images[image][1])
    _no_files_left(tmp_path, before, file_tree)


def test_make_bag_limit_and_relative_topic(frames_dir, tmp_path, run_cli):
    status, out, err = run_cli(make_bag.main, [frames_dir, "--out", tmp_path / "b", "--limit", "2",
                                               "--topic", "front/image_raw"])
    assert status == 0, err
    assert "wrote 2 frames on /front/image_raw" in out
    reader = bagio.open_reader(tmp_path / "b")
    try:
        assert bagio.topic_types(reader) == {"/front/image_raw": bagio.IMAGE}
        assert sum(1 for _ in reader.messages()) == 2
    finally:
        reader.close()


def test_make_bag_failure_leaves_no_new_folders(hostile_images, frames_dir, tmp_path, run_cli, one_error_line,
                                                file_tree):
    """--out in folders that do not exist yet: bag_writer made them and left them when a frame failed."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "f0.png").write_bytes((frames_dir / "f0.png").read_bytes())
    (src / "f1.png").write_bytes(hostile_images["truncated_png"][0].read_bytes())
    before = file_tree(tmp_path)
    status, _, err = run_cli(make_bag.main, [src, "--out", tmp_path / "new" / "deeper" / "bag"])
    one_error_line(status, err, "corrupt or truncated")
    _no_files_left(tmp_path, before, file_tree)


# ------------------------------------------------------------------------------------ ecmnet-ros-register
@pytest.mark.parametrize("case,match", [
    ("lib_is_a_file", "lib is not a directory"),
    ("script_is_a_file", "ecmnet-predict exists and is not a link"),
    ("marker_is_a_folder", "packages/ecmnet_ros exists and is not a file"),
    ("prefix_empty", "argument --prefix: a path must not be empty"),     # registered into the current dir
])
def test_ros_register_into_a_prefix_it_cannot_complete_writes_nothing(case, match, tmp_path, monkeypatch, run_cli,
                                                                      one_error_line, file_tree):
    """The links were written one by one: a prefix that refused a later one kept half a registration."""
    from ecmnet_ros import ament_register

    prefix = tmp_path / "prefix"
    if case == "lib_is_a_file":
        prefix.mkdir()
        (prefix / "lib").write_text("a file")
    elif case == "script_is_a_file":
        (prefix / "lib" / "ecmnet_ros").mkdir(parents=True)
        (prefix / "lib" / "ecmnet_ros" / "ecmnet-predict").write_text("someone else's")
    elif case == "marker_is_a_folder":
        (prefix / "share" / "ament_index" / "resource_index" / "packages" / "ecmnet_ros").mkdir(parents=True)
    else:
        prefix = ""
        monkeypatch.chdir(tmp_path)
    before = file_tree(tmp_path)
    status, _, err = run_cli(ament_register.main, ["--prefix", prefix])
    one_error_line(status, err, match)
    _no_files_left(tmp_path, before, file_tree)


# ------------------------------------------------------------------------------------ topic names
NAMES = ["/a", "/a/b", "a", "/", "//a", "/a/", "/1a", "/a/1b", "/a__b", "/_a", "/a b", "/a~", "~/a", "/{x}",
         "/a-b", "/a/b_", "/" + "a" * 246, "/" + "a" * 247, "/\u00e4", "", "/a//b", "/a/_1", "/A9", "/a.b"]


def test_topic_rules_agree_with_rclpy():
    rclpy_validate = pytest.importorskip("rclpy.validate_full_topic_name").validate_full_topic_name
    for name in NAMES:
        try:
            rclpy_validate(name)
            theirs = True
        except Exception:  # noqa: BLE001 - rclpy's InvalidTopicNameException
            theirs = False
        assert (full_topic_name_problem(name) is None) == theirs, name
    assert full_topic_name("camera/image") == "/camera/image"
    with pytest.raises(ValueError, match="not a valid ROS 2 topic name"):
        full_topic_name("bad topic!!")


# ------------------------------------------------------------------------------------ console scripts
def _script(name):
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", f"ecmnet_ros.{name.split('-', 1)[1].replace('-', '_')}"]


def test_console_scripts_keep_the_promise(bags, frames_dir, tmp_path, tiny_checkpoint, one_error_line, file_tree):
    runs = [
        (_script("ecmnet-bag-eval") + [bags / "bad_frames", "--topic", "/cam/image_raw/compressed", "--weights",
                                       tiny_checkpoint, "--out", tmp_path / "r"], "could be segmented (3 read, all bad"),
        (_script("ecmnet-bag-eval") + [bags / "good", "--topic", "/camera/image_raw", "--limit", "-2",
                                       "--out", tmp_path / "r"], "argument --limit"),
        (_script("ecmnet-make-bag") + [frames_dir, "--out", tmp_path / "b", "--topic", "bad topic!!"],
         "not a valid ROS 2 topic name"),
    ]
    for argv, match in runs:
        proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)
        one_error_line(proc.returncode, proc.stderr, match)
    assert file_tree(tmp_path) == set()
