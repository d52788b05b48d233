"""Class names and colours of the datasets we ship configs for."""
from __future__ import annotations

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Sidewalk", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_COLORS = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [0, 0, 192], [128, 128, 0],
                 [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]

CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]
CITYSCAPES_COLORS = [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153],
                     [153, 153, 153], [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152],
                     [70, 130, 180], [220, 20, 60], [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100],
                     [0, 80, 100], [0, 0, 230], [119, 11, 32]]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def default_palette(num_classes: int) -> list:
    """Deterministic distinct colours for datasets that do not name their own."""
    if num_classes == len(CITYSCAPES_COLORS):
        return [list(c) for c in CITYSCAPES_COLORS]
    if num_classes == len(CAMVID_COLORS):
        return [list(c) for c in CAMVID_COLORS]
    colors = []
    for i in range(num_classes):
        r = g = b = 0
        c = i + 1
        for j in range(8):   # PASCAL-VOC bit-interleaving palette
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append([r, g, b])
    return colors
