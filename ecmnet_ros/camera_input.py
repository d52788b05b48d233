"""One camera's input subscription: reliability matched to the publishers, loss accounting.

- `qos_reliability: auto` subscribes with what the topic's publishers offer (ecmnet_ros.qos) and
  re-checks when a publisher matches or leaves, when a publisher with incompatible QoS appears,
  and once a second (the graph can lag the DDS events). A change brings up the new
  subscription next to the old one and hands over when the new one delivers its first frame
  (frames both delivered during the overlap are dropped once by sequence number), or once it has
  matched for a second while the camera sends nothing.
- Every frame's publisher GID and publication sequence number (rclpy MessageInfo) give the
  frames that never reached the callback: transport loss, counted per publisher. The DDS
  message-lost event covers readers that never got a whole frame to count from.
- `facts()` hands all of it to transport_health.diagnose for /diagnostics.

Everything here runs on the node's executor thread (subscription, event and timer callbacks);
the lock only guards the counters that `facts()` reads.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import qos_policy_name_from_kind
from rclpy.validate_topic_name import validate_topic_name

from .qos import choose_reliability, describe_publishers, endpoint_node, input_qos, reliability_name
from .stats import percentile_ms
from .transport_health import InputFacts

HANDOVER_GRACE_S = 1.0      # a new subscription matched for this long without a frame takes over (idle camera)
ABANDON_S = 5.0             # a new subscription that matched nothing by then is dropped
REFRESH_PERIOD_S = 1.0


@dataclass
class _Sub:
    reliability: str
    handle: object = None
    created: float = 0.0


class CameraInput:
    def __init__(self, node, msg_type, topic: str, on_frame: Callable[[object], None], requested: str,
                 depth: int, expected_type: str, latency_window: int = 1000):
        self.node = node
        self.msg_type = msg_type
        self.expected_type = expected_type
        self.requested = requested
        self.depth = depth
        self._on_frame = on_frame
        self._lock = threading.Lock()
        self._last_seq: Dict[bytes, int] = {}
        self.received = 0                 # frames handed to on_frame
        self.gaps = 0                     # frames missing between consecutive sequence numbers
        self.dds_lost = 0                 # DDS message-lost events (samples dropped before completion)
        self.incompatible = 0             # requested-incompatible-QoS events
        self.incompatible_policy = ""
        self.switches = 0
        self._mark = (0, 0, 0, 0)         # (received, gaps, dds_lost, incompatible) at the last facts()
        self.last_frame: Optional[float] = None
        self.created = time.monotonic()
        # publisher write -> DDS reception in this process, and -> our callback (adds the executor's queueing)
        self.transport_latency = collections.deque(maxlen=latency_window)
        self.callback_latency = collections.deque(maxlen=latency_window)
        self._pending: Optional[_Sub] = None
        self._active: Optional[_Sub] = None
        validate_topic_name(topic)                           # NameValidationException, as create_subscription
        self.topic = node.resolve_topic_name(topic)          # remapped, fully qualified
        self._active = self._subscribe(choose_reliability(requested, self.publishers()))
        self.topic = self._active.handle.topic_name
        self._timer = node.create_timer(REFRESH_PERIOD_S, self.refresh) if requested == "auto" else None

    # ------------------------------------------------------------ graph
    def publishers(self, endpoints=None) -> list:
        """Publishers of the expected type on the topic (others can never match)."""
        if endpoints is None:
            endpoints = self.node.get_publishers_info_by_topic(self.topic)
        return [p for p in endpoints if p.topic_type == self.expected_type]

    # ------------------------------------------------------------ subscriptions
    def _subscribe(self, reliability: str) -> _Sub:
        holder = _Sub(reliability=reliability, created=time.monotonic())
        events = SubscriptionEventCallbacks(
            matched=lambda _info: self.refresh(), incompatible_qos=self._on_incompatible,
            message_lost=self._on_message_lost)
        holder.handle = self.node.create_subscription(
            self.msg_type, self.topic, lambda msg, info, h=holder: self._on_message(h, msg, info),
            input_qos(reliability, self.depth), event_callbacks=events)
        return holder

    def _handover(self) -> None:
        old, self._active, self._pending = self._active, self._pending, None
        self.switches += 1
        self.node.destroy_subscription(old.handle)

    def refresh(self) -> None:
        """Re-match the publishers' QoS (auto only); finish or abandon a pending switch."""
        if self.requested != "auto" or self._active is None:
            return
        if self._pending is not None:
            age = time.monotonic() - self._pending.created
            matched = self._pending.handle.get_publisher_count()
            if matched and age >= HANDOVER_GRACE_S:
                self._handover()          # matched, but the camera sends nothing: take over now
            elif not matched and age >= ABANDON_S:
                self.node.get_logger().warning(
                    f"[{self.topic}] input QoS {self._pending.reliability} matched no publisher within "
                    f"{ABANDON_S:g} s; staying {self._active.reliability}")
                self.node.destroy_subscription(self._pending.handle)
                self._pending = None
            return
        publishers = self.publishers()
        if not publishers:
            return                        # keep what we have; a later publisher triggers a new check
        want = choose_reliability("auto", publishers)
        if want != self._active.reliability:
            self.node.get_logger().info(
                f"[{self.topic}] publishers {describe_publishers(publishers)}: input QoS "
                f"{self._active.reliability} -> {want}")
            self._pending = self._subscribe(want)

    # ------------------------------------------------------------ callbacks
    def _on_message(self, holder: _Sub, msg, info) -> None:
        if holder is self._pending:
            self._handover()              # the new subscription delivers: the old one goes
        elif holder is not self._active:
            return                        # the old subscription's last frames during a handover
        gid, seq = info.get("publisher_gid"), info.get("publication_sequence_number")
        with self._lock:
            if gid is not None and seq is not None:       # None where the RMW does not report them
                key = bytes(gid["data"])
                last = self._last_seq.get(key)
                if last is not None:
                    if seq <= last:
                        return            # already delivered by the previous subscription
                    self.gaps += seq - last - 1
                self._last_seq[key] = seq
            self.received += 1
            self.last_frame = time.monotonic()
            source_ns, received_ns = info.get("source_timestamp"), info.get("received_timestamp")
            if source_ns:                 # the publisher's write time: same clock on one host
                self.callback_latency.append((time.time_ns() - source_ns) / 1e9)
                if received_ns:
                    self.transport_latency.append((received_ns - source_ns) / 1e9)
        self._on_frame(msg)

    def _on_incompatible(self, info) -> None:
        with self._lock:
            self.incompatible += max(1, int(info.total_count_change))
            try:
                self.incompatible_policy = qos_policy_name_from_kind(info.last_policy_kind)
            except ValueError:
                self.incompatible_policy = str(info.last_policy_kind)
        self.refresh()

    def _on_message_lost(self, info) -> None:
        with self._lock:
            self.dds_lost += int(info.total_count_change)

    # ------------------------------------------------------------ diagnostics
    def facts(self, timeout: float) -> InputFacts:
        """What this input saw since the previous call (counters are per period)."""
        endpoints = self.node.get_publishers_info_by_topic(self.topic)
        publishers = self.publishers(endpoints)
        live = {bytes(p.endpoint_gid) for p in publishers}
        with self._lock:
            for key in [k for k in self._last_seq if k not in live]:
                del self._last_seq[key]           # publisher gone (a restarted one has a new GID)
            r0, g0, d0, i0 = self._mark
            self._mark = (self.received, self.gaps, self.dds_lost, self.incompatible)
            received, gaps, dds_lost, incompatible = (self.received - r0, self.gaps - g0, self.dds_lost - d0,
                                                      self.incompatible - i0)
            silent = time.monotonic() - (self.last_frame if self.last_frame is not None else self.created)
            never = self.last_frame is None
        return InputFacts(
            topic=self.topic, expected_type=self.expected_type, requested=self.requested,
            reliability=self._active.reliability,
            publishers=[(endpoint_node(p), reliability_name(p.qos_profile.reliability)) for p in publishers],
            wrong_types=sorted({p.topic_type for p in endpoints if p.topic_type != self.expected_type}),
            matched=self._active.handle.get_publisher_count(),
            incompatible_events=incompatible, incompatible_policy=self.incompatible_policy,
            silent_for=silent, never_received=never, received=received, lost=max(gaps, dds_lost), timeout=timeout)

    def totals(self) -> Dict[str, str]:
        """Cumulative values for /diagnostics."""
        with self._lock:
            return {"input_reliability": self._active.reliability, "input_qos_requested": self.requested,
                    "frames_lost_transport": str(self.gaps), "dds_samples_lost": str(self.dds_lost),
                    "qos_incompatible_events": str(self.incompatible),
                    "transport_latency_p50_ms": f"{percentile_ms(self.transport_latency, 50):.2f}",
                    "transport_latency_p99_ms": f"{percentile_ms(self.transport_latency, 99):.2f}",
                    "callback_latency_p50_ms": f"{percentile_ms(self.callback_latency, 50):.2f}",
                    "callback_latency_p99_ms": f"{percentile_ms(self.callback_latency, 99):.2f}"}
