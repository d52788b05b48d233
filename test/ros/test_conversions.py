"""sensor_msgs <-> numpy conversions: layouts, zero-copy, malformed messages, cv-bridge parity."""
import array
import sys

import cv2
import numpy as np
import pytest

from ecmnet_ros import conversions as cv
from ecmnet_ros.conversions import ConversionError

Image = pytest.importorskip("sensor_msgs.msg").Image
CompressedImage = pytest.importorskip("sensor_msgs.msg").CompressedImage


def raw_msg(data: bytes, encoding: str, h: int, w: int, step: int, bigendian: int = 0):
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian = h, w, encoding, step, bigendian
    msg.data = array.array("B", data)
    return msg


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding,make", [
    ("rgb8", lambda a: a), ("bgr8", lambda a: a[:, :, ::-1]),
    ("rgba8", lambda a: np.dstack([a, np.full(a.shape[:2], 9, np.uint8)])),
    ("bgra8", lambda a: np.dstack([a[:, :, ::-1], np.full(a.shape[:2], 9, np.uint8)])),
])
def test_color_encodings_decode_to_rgb_without_copy(rgb, encoding, make):
    msg = cv.numpy_to_image_msg(np.ascontiguousarray(make(rgb)), encoding)
    out = cv.image_msg_to_rgb(msg)
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)), "decoding must be a view of the message"


def test_mono8_broadcasts_to_three_channels(rgb):
    gray = rgb[:, :, 0].copy()
    out = cv.image_msg_to_rgb(cv.numpy_to_image_msg(gray, "mono8"))
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_step_padding_is_skipped(rgb):
    step = 7 * 3 + 5                     # 5 bytes of padding per row, filled with garbage
    rows = [np.concatenate([rgb[r].reshape(-1), np.full(5, 0xEE, np.uint8)]) for r in range(5)]
    msg = raw_msg(np.concatenate(rows).tobytes(), "rgb8", 5, 7, step)
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding,dtype", [("mono16", ">u2"), ("16UC1", ">u2"), ("32FC1", ">f4")])
def test_big_endian_flag_is_honoured(encoding, dtype):
    values = np.arange(12, dtype=np.float64).reshape(3, 4) * 1000.5
    values = values.astype(np.uint16) if "16" in encoding else values.astype(np.float32)
    msg = raw_msg(values.astype(dtype).tobytes(), encoding, 3, 4, 4 * values.itemsize, bigendian=1)
    out = cv.image_to_numpy(msg)
    np.testing.assert_array_equal(out, values)
    assert out.dtype.isnative
    little = raw_msg(values.astype(dtype.replace(">", "<")).tobytes(), encoding, 3, 4, 4 * values.itemsize)
    np.testing.assert_array_equal(cv.image_to_numpy(little), values)


@pytest.mark.parametrize("kwargs,match", [
    (dict(data=bytes(5 * 21 - 1), h=5, w=7, step=21), "truncated image data"),
    (dict(data=bytes(5 * 21 + 3), h=5, w=7, step=21), "size mismatch"),
    (dict(data=bytes(5 * 20), h=5, w=7, step=20), "step 20 is smaller than one row"),
    (dict(data=b"", h=0, w=0, step=0), "empty image"),
    (dict(data=b"", h=5, w=7, step=21), "truncated image data: 0 bytes"),
])
def test_malformed_images_raise_clear_errors(kwargs, match):
    with pytest.raises(ConversionError, match=match):
        cv.image_msg_to_rgb(raw_msg(kwargs["data"], "rgb8", kwargs["h"], kwargs["w"], kwargs["step"]))


def test_unsupported_encodings_are_named():
    with pytest.raises(ConversionError, match="unsupported image encoding 'yuv422'"):
        cv.image_to_numpy(raw_msg(bytes(8), "yuv422", 2, 2, 4))
    msg = cv.numpy_to_image_msg(np.zeros((2, 2), np.uint16), "16UC1")
    with pytest.raises(ConversionError, match="cannot be segmented"):
        cv.image_msg_to_rgb(msg)


def test_compressed_png_is_lossless_and_jpeg_close(rgb):
    big = cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_NEAREST)
    for fmt, tol in (("png", 0), ("jpeg", 40)):
        msg = CompressedImage()
        msg.format, data = cv.encode_compressed(big, fmt)
        msg.data = array.array("B", data)
        out = cv.compressed_to_rgb(msg)
        assert out.shape == big.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - big.astype(int)).mean() <= tol


@pytest.mark.parametrize("fmt,data,match", [
    ("jpeg", b"", "empty CompressedImage"),
    ("jpeg", b"\xff\xd8not really a jpeg", "cannot decode CompressedImage"),
    ("16UC1; compressedDepth png", b"\x89PNG", "unsupported CompressedImage format"),
    ("tiff", b"II*\x00", "unsupported CompressedImage format"),
])
def test_bad_compressed_images_raise(fmt, data, match):
    msg = CompressedImage()
    msg.format = fmt
    msg.data = array.array("B", data)
    with pytest.raises(ConversionError, match=match):
        cv.compressed_to_rgb(msg)


def test_truncated_png_is_reported(rgb):
    _, data = cv.encode_compressed(rgb, "png")
    msg = CompressedImage()
    msg.format = "png"
    msg.data = array.array("B", data[: len(data) // 2])
    with pytest.raises(ConversionError, match="corrupt or truncated"):
        cv.compressed_to_rgb(msg)


def test_message_fields_and_rosbags_messages_share_the_decoder(rgb):
    fields = cv.image_fields(rgb, "rgb8")
    assert (fields["height"], fields["width"], fields["step"], fields["is_bigendian"]) == (5, 7, 21, 0)
    from rosbags.typesys import Stores, get_typestore
    ts = get_typestore(Stores.ROS2_KILTED)
    hdr = ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2),
                                           frame_id="c")
    msg = ts.types["sensor_msgs/msg/Image"](header=hdr, **fields)
    raw = ts.serialize_cdr(msg, "sensor_msgs/msg/Image")
    back = ts.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(cv.image_msg_to_rgb(back), rgb)


def test_image_fields_reject_wrong_shapes_and_types():
    with pytest.raises(ConversionError, match="needs 3 channel"):
        cv.image_fields(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ConversionError, match="needs dtype uint8"):
        cv.image_fields(np.zeros((2, 2), np.float32), "mono8")
    with pytest.raises(ConversionError, match="empty image"):
        cv.image_fields(np.zeros((0, 2), np.uint8), "mono8")


def test_confidence_encodings():
    conf = np.array([[0.0, 0.5], [0.999, 1.0]], np.float32)
    np.testing.assert_array_equal(cv.confidence_to_array(conf, "mono8"), [[0, 128], [255, 255]])
    assert cv.confidence_to_array(conf, "32FC1").dtype == np.float32
    with pytest.raises(ConversionError):
        cv.confidence_to_array(conf, "16UC1")


# ---------------------------------------------------------------- cv-bridge parity (8-bit)
def _cv_bridge():
    """The PyPI `cv-bridge` port, with its channel-count helper fixed for the installed OpenCV.

    Its CV_MAT_CNWrap assumes OpenCV 4's 3-bit depth field; OpenCV 5 widened it, so unpatched it
    reads bgr8 as 9 channels.  We only replace that helper; the decoding and colour conversion
    compared below are cv-bridge's own code.
    """
    cv_bridge = pytest.importorskip("cv_bridge", reason="pip install cv-bridge to compare against it")
    from cv_bridge.boost import cv_bridge_boost as boost

    shift = (cv2.CV_8UC2 - cv2.CV_8UC1).bit_length() - 1
    bridge = cv_bridge.CvBridge()
    bridge.cvtype2_to_dtype_with_channels = lambda t: (
        bridge.cvdepth_to_numpy_depth[t & ((1 << shift) - 1)], (t >> shift) + 1)
    return bridge, boost


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_matches_cv_bridge_for_8bit_encodings(rgb, encoding):
    bridge, _ = _cv_bridge()
    channels = cv.ENCODINGS[encoding][1]
    data = np.random.default_rng(1).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    msg = cv.numpy_to_image_msg(data[:, :, 0] if channels == 1 else data, encoding)
    theirs = bridge.imgmsg_to_cv2(msg, "passthrough")
    np.testing.assert_array_equal(cv.image_to_numpy(msg), theirs)
    theirs_rgb = bridge.imgmsg_to_cv2(msg, "rgb8")
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), theirs_rgb)
