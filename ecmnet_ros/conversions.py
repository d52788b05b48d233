"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Why not cv_bridge: the ROS one is not on PyPI, the PyPI `cv-bridge` port maps 16-bit
encodings wrongly.  These functions are duck-typed on the message fields, so the live
node (rclpy messages, `data` is an array.array) and the offline bag tools (rosbags
dataclasses, `data` is a numpy array) share one implementation.

Decoding is zero-copy where the layout allows it: the returned array is a strided view
of the message buffer (step padding is skipped through strides; bgr/bgra become RGB
through a negative channel stride).  Every malformed message raises `ConversionError`
with a sentence naming what is wrong.
"""
from __future__ import annotations

import array
import sys
from typing import Optional, Tuple

import numpy as np

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}
# encodings the segmentation model accepts (converted to RGB)
MODEL_INPUT_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
_HOST_BIG_ENDIAN = sys.byteorder == "big"


class ConversionError(ValueError):
    """A message that cannot be turned into an image (or an image that cannot become a message)."""


def _describe(msg) -> str:
    return f"{getattr(msg, 'encoding', '?')} {getattr(msg, 'width', '?')}x{getattr(msg, 'height', '?')}"


def image_to_numpy(msg) -> np.ndarray:
    """Image message -> H x W (1 channel) or H x W x C array viewing the message buffer."""
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(f"empty image ({_describe(msg)}): width and height must be > 0")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ConversionError(f"step {step} is smaller than one row of {_describe(msg)} "
                              f"({width} px * {channels} ch * {itemsize} B = {row_bytes} B)")
    buf = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    expected = step * height
    if buf.size < expected:
        raise ConversionError(f"truncated image data: {buf.size} bytes, expected step*height = "
                              f"{step}*{height} = {expected} for {_describe(msg)}")
    if buf.size > expected:
        raise ConversionError(f"image data size mismatch: {buf.size} bytes, expected step*height = "
                              f"{step}*{height} = {expected} for {_describe(msg)}")
    dt = np.dtype(dtype)
    if itemsize > 1:
        dt = dt.newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ndarray(shape=(height, width, channels), dtype=dt, buffer=buf,
                     strides=(step, channels * itemsize, itemsize))
    if itemsize > 1 and bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        arr = arr.astype(dt.newbyteorder("="))    # copy only when byte order differs from the host
    return arr[:, :, 0] if channels == 1 else arr


def to_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Decoded image -> H x W x 3 uint8 RGB (views, no copy, for every model input encoding)."""
    if encoding not in MODEL_INPUT_ENCODINGS:
        raise ConversionError(f"encoding {encoding!r} cannot be segmented "
                              f"(model input encodings: {', '.join(MODEL_INPUT_ENCODINGS)})")
    if encoding == "mono8":
        return np.broadcast_to(arr[:, :, None], arr.shape + (3,))
    if encoding in ("rgb8", "rgba8"):
        return arr[:, :, :3]
    return arr[:, :, 2::-1]                      # bgr8 / bgra8: reversed channel view


def check_frame_pixels(msg, max_pixels: Optional[int], limit_name: str = "max_input_pixels") -> None:
    """Refuse an Image message with more than max_pixels pixels (None or 0: no limit) from its
    header fields alone, before any conversion touches its data."""
    if not max_pixels:
        return
    try:
        height, width = int(msg.height), int(msg.width)
    except (AttributeError, TypeError, ValueError):
        return                                      # image_to_numpy reports malformed fields
    if height > 0 and width > 0 and height * width > max_pixels:
        raise ConversionError(f"image is {width}x{height} = {height * width:,} pixels, more than the limit of "
                              f"{int(max_pixels):,} ({limit_name})")


def image_msg_to_rgb(msg, max_pixels: Optional[int] = None, limit_name: str = "max_input_pixels") -> np.ndarray:
    check_frame_pixels(msg, max_pixels, limit_name)
    return to_rgb(image_to_numpy(msg), str(msg.encoding))


def compressed_to_rgb(msg, max_pixels: Optional[int] = None, limit_name: str = "max_input_pixels",
                      quiet: bool = False) -> np.ndarray:
    """CompressedImage (jpeg/png, as image_transport's compressed plugin writes) -> RGB uint8.

    The size in the jpeg/png header is checked against max_pixels before decoding. quiet=True (the
    single-threaded bag tools) also keeps libjpeg's / libpng's own stderr lines out of the output and
    treats a truncation warning as a bad frame (ecmnet_core.runtime.images.decode).
    """
    from ecmnet_core.runtime.images import ImageError, decode

    fmt = str(msg.format).lower()
    if (fmt and not any(tag in fmt for tag in COMPRESSED_FORMATS)) or "compresseddepth" in fmt:
        raise ConversionError(f"unsupported CompressedImage format {msg.format!r} (supported: jpeg, png)")
    data = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    if data.size == 0:
        raise ConversionError("empty CompressedImage (no data bytes)")
    try:
        img = decode(data, f"CompressedImage ({msg.format!r}, {data.size} bytes)", max_pixels=max_pixels,
                     limit_name=limit_name, quiet=quiet)
    except ImageError as exc:
        raise ConversionError(str(exc)) from None
    return img[:, :, ::-1]


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> Tuple[str, bytes]:
    """RGB (or mono) uint8 -> (format string, bytes) in image_transport's compressed layout."""
    import cv2

    fmt = fmt.lower()
    if fmt not in COMPRESSED_FORMATS:
        raise ConversionError(f"compressed format must be one of {COMPRESSED_FORMATS}, got {fmt!r}")
    ext = ".png" if fmt == "png" else ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    if rgb.ndim == 2:
        ok, buf = cv2.imencode(ext, rgb, params)
        label = "mono8"
    else:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
        label = "rgb8"
    if not ok:
        raise ConversionError(f"cannot encode image as {fmt}")
    kind = "png" if ext == ".png" else "jpeg"
    return f"{label}; {kind} compressed {'mono8' if rgb.ndim == 2 else 'bgr8'}", buf.tobytes()


def image_fields(arr: np.ndarray, encoding: str) -> dict:
    """numpy image -> the field values of a sensor_msgs/Image (data as a contiguous uint8 array)."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ConversionError(f"{encoding} needs {channels} channel(s), got an array of shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConversionError(f"cannot make a message from an empty image of shape {arr.shape}")
    if arr.dtype != np.dtype(dtype):
        raise ConversionError(f"{encoding} needs dtype {np.dtype(dtype).name}, got {arr.dtype.name}")
    arr = np.ascontiguousarray(arr)
    return {"height": int(arr.shape[0]), "width": int(arr.shape[1]), "encoding": encoding,
            "is_bigendian": int(_HOST_BIG_ENDIAN and arr.dtype.itemsize > 1),
            "step": int(arr.shape[1] * channels * arr.dtype.itemsize),
            "data": arr.reshape(-1).view(np.uint8)}


def numpy_to_image_msg(arr: np.ndarray, encoding: str, header=None, msg_cls=None):
    """numpy image -> rclpy sensor_msgs/Image (one copy into the message's array.array)."""
    if msg_cls is None:
        from sensor_msgs.msg import Image as msg_cls
    fields = image_fields(arr, encoding)
    data = array.array("B")
    data.frombytes(fields.pop("data").data)
    msg = msg_cls()
    for key, value in fields.items():
        setattr(msg, key, value)
    msg.data = data
    if header is not None:
        msg.header = header
    return msg


def confidence_to_array(conf: np.ndarray, encoding: str) -> np.ndarray:
    """Softmax max-probability in [0, 1] -> 32FC1 as is, or mono8 scaled to round(255 * p)."""
    if encoding == "32FC1":
        return np.asarray(conf, dtype=np.float32)
    if encoding == "mono8":
        return np.clip(np.rint(np.asarray(conf, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    raise ConversionError(f"confidence encoding must be 32FC1 or mono8, got {encoding!r}")


def shape_of(msg) -> Optional[Tuple[int, int]]:
    try:
        return int(msg.height), int(msg.width)
    except AttributeError:
        return None
