"""Topic naming shared by the live node and the bag tools.

Follows image_transport conventions: `<cam>/image_raw/compressed` is the compressed
transport of `<cam>/image_raw`, and `<cam>/camera_info` sits next to the image topic.
Outputs of camera `<cam>` go to `<cam>/segmentation/{mask,color,overlay,confidence,camera_info,label_info}`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

OUTPUTS = ("mask", "color", "overlay", "confidence", "camera_info", "label_info")
# rmw's limit for a fully qualified topic name (RMW_TOPIC_MAX_NAME_LENGTH: 255 minus the 8 characters
# DDS prefixes such as "rt" take)
MAX_TOPIC_LENGTH = 255 - 8


def full_topic_name_problem(name: str):
    """Why `name` is not a valid fully qualified ROS 2 topic name, or None when it is.

    The rules of rmw_validate_full_topic_name (what rclpy.validate_full_topic_name enforces), written
    out so the bag tools need no ROS install: leading '/', no trailing '/', no '//', only ASCII letters,
    digits, '_' and '/', no token starting with a digit, at most 247 characters.
    """
    if not name:
        return "it is empty"
    if not name.startswith("/"):
        return "it must start with '/'"
    if len(name) > MAX_TOPIC_LENGTH:
        return f"it is longer than {MAX_TOPIC_LENGTH} characters"
    bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_/]", c)})
    if bad:
        return f"it may contain only letters, digits, '_' and '/', not {''.join(bad)!r}"
    if name.endswith("/"):
        return "it must not end with '/'"
    if "//" in name:
        return "it must not contain '//'"
    if any(token[:1].isdigit() for token in name.split("/")):
        return "no part of it may start with a digit"
    return None


def full_topic_name(name: str, what: str = "topic") -> str:
    """A topic name for a bag: relative names resolve in the root namespace (as `ros2 bag record`
    does); anything ROS 2 could not subscribe to raises ValueError naming the rule it breaks."""
    text = str(name).strip()
    full = text if text.startswith("/") else "/" + text
    problem = full_topic_name_problem(full if text else "")
    if problem:
        raise ValueError(f"{what} {name!r} is not a valid ROS 2 topic name: {problem}")
    return full


def _join(*parts: str) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return ""
    head = parts[0]
    rest = [p.strip("/") for p in parts[1:]]
    joined = "/".join([head.rstrip("/")] + rest) if head != "/" else "/" + "/".join(rest)
    return joined


@dataclass(frozen=True)
class CameraTopics:
    input: str
    compressed: bool
    camera_info: str
    prefix: str

    def output(self, kind: str) -> str:
        if kind not in OUTPUTS:
            raise ValueError(f"unknown output {kind!r}; one of {OUTPUTS}")
        return _join(self.prefix, kind)


def camera_topics(input_topic: str, prefix: str = "") -> CameraTopics:
    topic = input_topic.rstrip("/") or input_topic
    compressed = topic.endswith("/compressed") or topic == "compressed"
    base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
    cam_ns = base.rsplit("/", 1)[0] if "/" in base else ""
    if base.startswith("/") and cam_ns == "":
        cam_ns = "/"
    info = _join(cam_ns, "camera_info") if cam_ns else "camera_info"
    out = prefix or (_join(cam_ns, "segmentation") if cam_ns else "segmentation")
    return CameraTopics(input=topic, compressed=compressed, camera_info=info, prefix=out)
