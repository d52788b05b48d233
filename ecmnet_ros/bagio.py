"""rosbag2 reading/writing through the `rosbags` library (no ROS install needed).

Bags are written into a temporary sibling directory and renamed into place when complete,
so an interrupted run never leaves a half-written bag under the requested name.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ecmnet_core.cli.common import UserError
from ecmnet_core.utils.atomic import parents_made

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
FORMATS = ("mcap", "sqlite3")


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def header(ts, stamp_ns: int, frame_id: str):
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                  frame_id=frame_id)


def stamp_ns(hdr) -> int:
    return int(hdr.stamp.sec) * 1_000_000_000 + int(hdr.stamp.nanosec)


def image(ts, hdr, fields: dict):
    return ts.types[IMAGE](header=hdr, height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                           is_bigendian=fields["is_bigendian"], step=fields["step"],
                           data=np.ascontiguousarray(fields["data"]))


def compressed(ts, hdr, fmt: str, data: bytes):
    return ts.types[COMPRESSED](header=hdr, format=fmt, data=np.frombuffer(data, dtype=np.uint8))


@contextlib.contextmanager
def bag_writer(out: Path, fmt: str = "mcap"):
    """Yield (writer, typestore); the bag appears at `out` only if the block succeeds."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if fmt not in FORMATS:
        raise UserError(f"bag format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists():
        raise UserError(f"output bag {out} already exists; remove it or choose another path")
    ts = typestore()
    plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
    with parents_made(out.parent):           # folders made for --out go again if the bag fails
        tmp_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        tmp = tmp_root / out.name
        try:
            writer = Writer(tmp, version=9, storage_plugin=plugin)
            writer.open()
            try:
                yield writer, ts
            finally:
                writer.close()
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)


def open_reader(path: Path):
    """AnyReader for a bag directory (or single .mcap/.db3 file) with a clear error if unreadable."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    path = Path(path)
    if not path.exists():
        raise UserError(f"no such bag: {path}")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except (AnyReaderError, Exception) as exc:  # noqa: BLE001 - rosbags raises several error types
        raise UserError(f"cannot read bag {path}: {type(exc).__name__}: {exc}") from None
    return reader


def topic_types(reader) -> dict:
    return {c.topic: c.msgtype for c in reader.connections}


def require_topic(reader, topic: str, allowed=(IMAGE, COMPRESSED)):
    types = topic_types(reader)
    if topic not in types:
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(types.items())) or "none"
        raise UserError(f"topic {topic} is not in the bag; available topics: {listing}")
    if types[topic] not in allowed:
        raise UserError(f"topic {topic} has type {types[topic]}, expected {' or '.join(allowed)}")
    return [c for c in reader.connections if c.topic == topic]
