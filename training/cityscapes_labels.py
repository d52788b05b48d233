"""Cityscapes labelIds -> 19 trainIds, written from the public label definition (cityscapesScripts labels.py).

Only the 19 evaluated classes get a trainId; every other labelId (void, parking, rail track,
guard rail, bridge, tunnel, polegroup, caravan, trailer, ...) maps to the ignore value 255.
"""
from __future__ import annotations

import numpy as np

IGNORE = 255

# (labelId, name, trainId) for the 34 labelIds that appear in *_gtFine_labelIds.png
LABELS = [
    (0, "unlabeled", IGNORE), (1, "ego vehicle", IGNORE), (2, "rectification border", IGNORE),
    (3, "out of roi", IGNORE), (4, "static", IGNORE), (5, "dynamic", IGNORE), (6, "ground", IGNORE),
    (7, "road", 0), (8, "sidewalk", 1), (9, "parking", IGNORE), (10, "rail track", IGNORE),
    (11, "building", 2), (12, "wall", 3), (13, "fence", 4), (14, "guard rail", IGNORE),
    (15, "bridge", IGNORE), (16, "tunnel", IGNORE), (17, "pole", 5), (18, "polegroup", IGNORE),
    (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8), (22, "terrain", 9),
    (23, "sky", 10), (24, "person", 11), (25, "rider", 12), (26, "car", 13), (27, "truck", 14),
    (28, "bus", 15), (29, "caravan", IGNORE), (30, "trailer", IGNORE), (31, "train", 16),
    (32, "motorcycle", 17), (33, "bicycle", 18),
]
NUM_LABEL_IDS = 34


def label_id_to_train_id_lut() -> np.ndarray:
    """256-entry int16 table; -1 marks values that are not Cityscapes labelIds (rejected by the loader)."""
    lut = np.full(256, -1, dtype=np.int16)
    for label_id, _, train_id in LABELS:
        lut[label_id] = train_id
    return lut


def train_id_to_label_id() -> np.ndarray:
    """19-entry table for writing predictions in the official labelIds format."""
    out = np.zeros(19, dtype=np.uint8)
    for label_id, _, train_id in LABELS:
        if train_id != IGNORE:
            out[train_id] = label_id
    return out
