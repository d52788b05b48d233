"""Node parameters: one table that declares, documents and validates them.

The table is also what docs/ros.md, `ecmnet-segment --help` and the launch-file test read,
so a parameter cannot exist in one place and be missing in another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

from ecmnet_core.runtime.images import DEFAULT_MAX_PIXELS

CHOICES = {
    "precision": ("fp32", "fp16", "bf16"),
    "qos_reliability": ("auto", "best_effort", "reliable"),
    "confidence_encoding": ("32FC1", "mono8"),
}


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    range: Optional[Tuple[float, float]] = None   # inclusive, ints or floats
    read_only: bool = True


PARAMETERS: Sequence[Param] = (
    Param("weights", "", "ECMNet checkpoint (.pt) or ONNX file from ecmnet-export; empty = the shipped "
                        "CamVid weights"),
    Param("device", "auto", "auto (CUDA if available, else CPU), cpu, cuda, cuda:N"),
    Param("allow_cpu_fallback", True, "if a CUDA device is requested but absent, warn and run on CPU "
                                      "instead of refusing to start"),
    Param("backend", "auto", "SS2D scan backend: auto, reference, cuda, mamba; or onnxruntime / tensorrt "
                           "to run an .onnx weights file"),
    Param("precision", "fp32", "fp32, fp16 or bf16 (half precisions need CUDA)"),
    Param("compile", False, "torch.compile the network (CUDA, .pt weights): 11.2 -> 2.1 ms for the network "
                            "on an H100 at 1024x2048 fp16, after ~2-3 min of compiling at start and for every new "
                            "input size (set resolution to the camera size so the warm-up compiles it)"),
    Param("resolution", "model", "network input size: 'model' (checkpoint input_size), 'native' "
                                 "(each image's own size) or HxW such as 360x480; masks are always "
                                 "published at the input image size"),
    Param("max_input_pixels", DEFAULT_MAX_PIXELS, "frames with more pixels (width x height, read from the "
                                                  "message or the jpeg/png header before decoding) are "
                                                  "rejected as bad frames; also caps resolution; 0 = no limit "
                                                  "(default 4096x2048: cameras up to 4K UHD)", (0, 2**30)),
    Param("input_topics", ["image"], "camera topics; a name ending in /compressed subscribes "
                                     "sensor_msgs/CompressedImage (jpeg/png), others sensor_msgs/Image"),
    Param("output_prefixes", [""], "per-camera output namespace, same length as input_topics; "
                                   "empty entries = <camera namespace>/segmentation"),
    Param("camera_info_passthrough", True, "subscribe <camera namespace>/camera_info and republish it on "
                                           "<prefix>/camera_info with each mask's stamp"),
    Param("qos_reliability", "auto", "input subscription reliability: auto (match the publishers: reliable "
                                      "when every publisher is reliable, else best effort), best_effort or "
                                      "reliable"),
    Param("qos_depth", 20, "input subscription history depth (a large frame holds a slot while its fragments "
                           "arrive or are repaired; docs/ros.md \"Transport\")", (1, 1000)),
    Param("output_qos_depth", 5, "output publishers' history depth (reliable)", (1, 1000)),
    Param("publish_color", True, "publish the colourised mask (rgb8) on <prefix>/color"),
    Param("publish_overlay", False, "publish image/mask blend (rgb8) on <prefix>/overlay"),
    Param("overlay_alpha", 0.5, "mask opacity in the overlay", (0.0, 1.0), read_only=False),
    Param("publish_confidence", False, "publish per-pixel softmax max on <prefix>/confidence"),
    Param("confidence_encoding", "mono8", "mono8 (round(255 * probability), what Nav2's "
                                          "semantic_segmentation_layer reads) or 32FC1 (probability 0..1)"),
    Param("confidence_threshold", 0.0, "pixels whose softmax max is below this are published as class "
                                       "255 (UNLABELED in <prefix>/label_info, black in color/overlay); "
                                       "0 = every pixel keeps its most likely class. Also LabelInfo.threshold",
          (0.0, 1.0)),
    Param("batch_cameras", True, "run frames of several cameras waiting at once as one batch "
                                 "(same size only)"),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.1, 60.0)),
    Param("latency_window", 1000, "latency samples per camera kept for p50/p99", (10, 100000)),
    Param("stale_input_timeout", 5.0, "seconds without input before diagnostics report WARN",
          (0.1, 3600.0)),
    Param("error_log_period", 5.0, "minimum seconds between repeated error logs per camera and kind",
          (0.0, 3600.0)),
    Param("warmup", True, "run one inference at start so the first frame is not slow"),
)
PARAM_NAMES = tuple(p.name for p in PARAMETERS)


class ConfigError(ValueError):
    """Invalid parameter values; the message names the parameter and what is allowed."""


def parse_resolution(text: str) -> Optional[Tuple[int, int]] | str:
    """'model' / 'native' / 'HxW' -> that keyword or (H, W)."""
    value = str(text).strip().lower()
    if value in ("model", "native"):
        return value
    match = re.fullmatch(r"(\d+)\s*[x,]\s*(\d+)", value)
    if not match:
        raise ConfigError(f"parameter resolution must be 'model', 'native' or HxW like 360x480, got {text!r}")
    h, w = int(match.group(1)), int(match.group(2))
    if h < 16 or w < 16:
        raise ConfigError(f"parameter resolution must be at least 16x16, got {text!r}")
    return h, w


@dataclass
class NodeConfig:
    values: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None


def validate(values: dict) -> NodeConfig:
    """Cross-field checks that ParameterDescriptor ranges cannot express."""
    for name, choices in CHOICES.items():
        if values[name] not in choices:
            raise ConfigError(f"parameter {name} must be one of {', '.join(choices)}, got {values[name]!r}")
    for p in PARAMETERS:
        if p.range is not None and not (p.range[0] <= values[p.name] <= p.range[1]):
            raise ConfigError(f"parameter {p.name} must be in [{p.range[0]}, {p.range[1]}], got {values[p.name]!r}")
    device = str(values["device"])
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"parameter device must be auto, cpu, cuda or cuda:N, got {device!r}")
    values["resolution"] = parse_resolution(values["resolution"])
    limit = values["max_input_pixels"]
    if isinstance(values["resolution"], tuple) and limit and \
            values["resolution"][0] * values["resolution"][1] > limit:
        h, w = values["resolution"]
        raise ConfigError(f"parameter resolution {h}x{w} = {h * w:,} pixels is more than max_input_pixels "
                          f"({limit:,})")
    topics: List[str] = [str(t).strip() for t in values["input_topics"]]
    if not topics or any(not t for t in topics):
        raise ConfigError("parameter input_topics must list at least one non-empty topic name")
    if len(set(topics)) != len(topics):
        raise ConfigError(f"parameter input_topics has duplicates: {topics}")
    values["input_topics"] = topics
    prefixes = [str(p).strip() for p in values["output_prefixes"]]
    if prefixes in ([], [""]):
        prefixes = [""] * len(topics)
    if len(prefixes) != len(topics):
        raise ConfigError(f"parameter output_prefixes needs one entry per input topic ({len(topics)}), "
                          f"got {len(prefixes)}")
    values["output_prefixes"] = prefixes
    return NodeConfig(values)
