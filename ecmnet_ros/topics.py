"""Topic naming shared by the live node and the bag tools.

Follows image_transport conventions: `<cam>/image_raw/compressed` is the compressed
transport of `<cam>/image_raw`, and `<cam>/camera_info` sits next to the image topic.
Outputs of camera `<cam>` go to `<cam>/segmentation/{mask,color,overlay,confidence,camera_info,label_info}`.
"""
from __future__ import annotations

from dataclasses import dataclass

OUTPUTS = ("mask", "color", "overlay", "confidence", "camera_info", "label_info")


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
