"""Class metadata as `vision_msgs/LabelInfo`, the message Nav2's semantic_segmentation_layer and
other vision_msgs consumers read to turn mask class ids into names.

Convention (vision_msgs): LabelInfo is published once per pipeline on its own latched topic next
to the results, like CameraInfo next to an image: here `<prefix>/label_info` beside
`<prefix>/mask`, reliable + transient local, depth 1, so a consumer that starts later still gets it.
LabelInfo reserves the largest id of the mask's type for "unlabeled": with a mono8 mask, pixels
whose confidence is below `threshold` get id 255 and the map lists 255 -> UNLABELED.
"""
from __future__ import annotations

from typing import Sequence

UNLABELED = 255           # mono8 mask: the largest id, LabelInfo's "UNLABELED" class
UNLABELED_NAME = "UNLABELED"


def vision_msgs_types():
    """(LabelInfo, VisionClass), or None when vision_msgs is not installed."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    return LabelInfo, VisionClass


def label_info_msg(types, classes: Sequence[str], threshold: float, stamp=None, frame_id: str = ""):
    """class ids 0..N-1 named from the checkpoint's metadata; `threshold` = the confidence below
    which a pixel is published as UNLABELED (0 = every pixel keeps its most likely class)."""
    label_info_cls, vision_class_cls = types
    msg = label_info_cls()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.class_map = [vision_class_cls(class_id=i, class_name=str(name)) for i, name in enumerate(classes)]
    if threshold > 0:
        msg.class_map.append(vision_class_cls(class_id=UNLABELED, class_name=UNLABELED_NAME))
    msg.threshold = float(threshold)
    return msg


def apply_threshold(mask, confidence, threshold: float, color=None) -> tuple:
    """Pixels whose confidence is below `threshold` -> UNLABELED in the mask (black in the colour
    image). Returns new arrays; the engine's are left untouched."""
    if threshold <= 0 or confidence is None:
        return mask, color
    low = confidence < threshold
    mask = mask.copy()
    mask[low] = UNLABELED
    if color is not None:
        color = color.copy()
        color[low] = 0
    return mask, color

