"""Why no (or too few) frames arrive: turns what one camera input observed into a diagnostics
level and a message that names the likely cause, instead of a bare "no input".

Pure functions over `InputFacts` (collected by `camera_input.CameraInput` from the ROS graph,
QoS events and message sequence numbers), so every message can be checked without DDS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

OK, WARN, ERROR = 0, 1, 2

SHM_HINT = ("Fast DDS's default 512 kB shared-memory segment drops best-effort frames over ~512 kB "
            "between processes: start the camera process with FASTDDS_DEFAULT_PROFILES_FILE="
            "<ecmnet_ros share>/config/fastdds.xml, or publish reliable")


def loss_cause(facts: "InputFacts") -> str:
    """The likely cause of frames lost between the publisher and this node's callback."""
    offered = {r for _, r in facts.publishers}
    if facts.reliability == "reliable":
        return ("reliable input: frames were evicted from the subscription history before their repair finished "
                "(raise qos_depth) or from the publisher's own history (its depth) - repairs are slow when the "
                "camera process sends through Fast DDS's default 512 kB shared-memory segment: give it "
                "config/fastdds.xml (FASTDDS_DEFAULT_PROFILES_FILE)")
    if "reliable" in offered and facts.requested != "auto":
        return (f"the publisher is reliable but this node subscribes best effort (qos_reliability: "
                f"{facts.requested}), so lost fragments are never repaired: set qos_reliability to auto; "
                + SHM_HINT)
    if offered == {"reliable", "best_effort"}:
        return ("the topic has best-effort and reliable publishers, so this node subscribes best effort and no "
                "lost fragment is repaired; " + SHM_HINT)
    return SHM_HINT


@dataclass
class InputFacts:
    topic: str
    expected_type: str
    requested: str                      # qos_reliability parameter: auto | reliable | best_effort
    reliability: str                    # what the input subscription uses now
    publishers: List[Tuple[str, str]] = field(default_factory=list)   # (node, reliability), expected type
    wrong_types: List[str] = field(default_factory=list)              # other types published on the topic
    matched: int = 0                    # publishers matched by the subscription (DDS level)
    incompatible_events: int = 0        # requested-incompatible-QoS events in this period
    incompatible_policy: str = ""
    silent_for: float = 0.0             # seconds since the last frame (or since subscribing)
    never_received: bool = True
    received: int = 0                   # frames that reached the callback in this period
    lost: int = 0                       # frames that did not (sequence gaps + DDS message-lost) this period
    timeout: float = 5.0


def _pubs(facts: InputFacts) -> str:
    return ", ".join(f"{n} ({r})" for n, r in facts.publishers)


def diagnose(facts: InputFacts) -> Tuple[int, str, str]:
    """(level, message, kind) for this period; kind '' when all is well, else a short tag used
    to throttle the matching log line ('topic type', 'qos mismatch', 'transport loss', ...)."""
    stale = facts.silent_for > facts.timeout
    topic = facts.topic
    if facts.wrong_types and stale:
        return (ERROR, f"no input for {facts.timeout:g} s: topic {topic} carries {', '.join(facts.wrong_types)}, "
                       f"this node expects {facts.expected_type}", "topic type")
    offered = {r for _, r in facts.publishers}
    never_match = facts.reliability == "reliable" and "best_effort" in offered
    if (never_match or facts.incompatible_events) and (facts.requested != "auto" or stale):
        # auto re-subscribes by itself; a mismatch is news only with a fixed reliability or when it persists
        policy = facts.incompatible_policy or "RELIABILITY"
        if never_match:
            detail = f"this node requests reliable, publisher(s) {_pubs(facts)}; best-effort ones never match"
            fix = "set qos_reliability to auto (default) or best_effort"
        else:
            detail = f"publisher(s) {_pubs(facts)}"
            fix = "compare `ros2 topic info -v` of both sides"
        level = ERROR if facts.matched == 0 else WARN
        return (level, f"QoS mismatch on {topic} ({policy} incompatible): {detail}: {fix}", "qos mismatch")
    if stale:
        head = f"no input for {facts.silent_for:.1f} s" + (" (none since start)" if facts.never_received else "")
        if not facts.publishers and facts.matched == 0:
            return WARN, f"{head}: no publisher on {topic}", ""
        if facts.matched == 0:
            return (WARN, f"{head}: publisher(s) {_pubs(facts)} on {topic} not matched yet "
                          "(discovery in progress?)", "not matched")
        if facts.lost:
            return (ERROR, f"{head} but {facts.lost} frame(s) lost in transport from {_pubs(facts) or 'the publisher'}"
                           f" (input QoS {facts.reliability}): {loss_cause(facts)}", "transport loss")
        if "best_effort" in offered or facts.reliability == "best_effort":
            return (WARN, f"{head}: {facts.matched} publisher(s) matched ({_pubs(facts)}) but no frame arrived: "
                          f"the camera stopped publishing, or its frames are dropped in transport; {SHM_HINT}",
                    "matched but silent")
        return (WARN, f"{head}: {facts.matched} publisher(s) matched ({_pubs(facts)}, reliable: lost frames would "
                      "be repaired) but no frame arrived: the camera most likely stopped publishing",
                "matched but silent")
    total = facts.received + facts.lost
    if facts.lost and facts.lost * 100 >= total:    # >= 1 % of this period's frames lost
        return (WARN, f"{facts.lost} of {total} frame(s) lost in transport in the last period "
                      f"(input QoS {facts.reliability}, publishers {_pubs(facts)}): {loss_cause(facts)}",
                "transport loss")
    return OK, "ok", ""
