"""Input QoS: match what the camera offers, as rosbag2's recorder does.

A reliable subscription never matches a best-effort publisher, and a best-effort subscription
turns a reliable publisher into a best-effort one (no repair of lost fragments: large frames
vanish). So `qos_reliability: auto` reads the offered QoS of the topic's publishers
(`get_publishers_info_by_topic`) and subscribes reliable only when every publisher is reliable,
best effort otherwise (mixed publishers, or none yet: best effort matches everyone).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY_CHOICES = ("auto", "best_effort", "reliable")
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")

_NAMES = {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}


def reliability_name(policy) -> str:
    """'reliable' / 'best_effort' / the policy's own name (system_default, unknown)."""
    try:
        policy = ReliabilityPolicy(policy)
    except ValueError:
        return str(policy)
    return _NAMES.get(policy, policy.name.lower())


def choose_reliability(requested: str, publishers: Iterable) -> str:
    """'reliable' or 'best_effort' for a subscription, given the parameter and the publishers'
    TopicEndpointInfo list (only publishers of the expected message type should be passed)."""
    if requested != "auto":
        return requested
    offered = [reliability_name(p.qos_profile.reliability) for p in publishers]
    return "reliable" if offered and all(o == "reliable" for o in offered) else "best_effort"


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """Volatile keep-last input profile. The depth matters for large frames: a reader keeps a
    fragmented frame in a history slot until it is complete, so a shallow history evicts frames
    still being repaired (A/B of depth 5 and 20 in docs/ros.md "Transport")."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def endpoint_node(info) -> str:
    """'/ns/name' of a TopicEndpointInfo, or '(node not yet discovered)' while the graph lags."""
    if not info.node_name or info.node_name == "_NODE_NAME_UNKNOWN_":
        return "(node not yet discovered)"
    return f"{info.node_namespace.rstrip('/')}/{info.node_name}"


def describe_publishers(publishers: Iterable) -> str:
    """'/camera_driver (reliable), /ns/other (best_effort)' for logs and diagnostics."""
    return ", ".join(sorted(f"{endpoint_node(p)} ({reliability_name(p.qos_profile.reliability)})"
                            for p in publishers))


def loaded_profile() -> Optional[str]:
    """The Fast DDS XML profile this process was started with, if any (env var value)."""
    for var in PROFILE_ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def shipped_profile() -> Optional[Path]:
    """config/fastdds.xml of the installed package (ament index), else of this source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory("ecmnet_ros")) / "config" / "fastdds.xml"
        if path.is_file():
            return path
    except Exception:  # noqa: BLE001 - no ament index (pip install): fall back to the source tree
        pass
    path = Path(__file__).resolve().parents[1] / "config" / "fastdds.xml"
    return path if path.is_file() else None
