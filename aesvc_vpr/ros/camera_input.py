"""The camera subscription: one transport, and a reliability that connects to the publishers.

``image_transport`` picks one topic, as image_pipeline nodes do: ``raw`` (sensor_msgs/Image on
``image``) or ``compressed`` (CompressedImage on ``image/compressed``); a camera that publishes
both would otherwise deliver each frame twice. ``image_reliability: auto`` matches the
publishers found on the topic, as ``ros2 topic echo`` and rosbag2 do: reliable when every one of
them offers reliable, else best effort, which connects to both kinds. With no publisher yet it
starts best effort and re-checks on every ``refresh``, switching to reliable when only reliable
publishers appear: across processes FastDDS delivers large frames from a reliable publisher to a
reliable subscription only (docs/node.md, QoS). An incompatible-QoS event is kept, naming both
sides' settings, for /diagnostics.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import qos_policy_name_from_kind, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

TRANSPORTS: dict[str, tuple[type, str]] = {'raw': (Image, 'image'),
                                           'compressed': (CompressedImage, 'image/compressed')}
DEPTH = 1        # a slow consumer should see the newest frame, never a backlog


def auto_reliability(offered: list[ReliabilityPolicy]) -> ReliabilityPolicy:
    """Reliable only when every publisher offers it (none found: best effort, connects to all)."""
    if offered and all(p == ReliabilityPolicy.RELIABLE for p in offered):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


def policy_name(policy: Any) -> str:
    """'reliable', 'best_effort', 'volatile', ... as the parameters and ros2 CLI spell them."""
    return policy.name.lower()


class CameraInput:
    """The node's one image subscription, created on activate and destroyed on deactivate."""

    def __init__(self, node: LifecycleNode, transport: str, reliability: str,
                 callback: Callable[[Any], None]) -> None:
        """Prepare (not yet subscribe) ``transport`` with ``reliability`` (or 'auto')."""
        self._node = node
        self._kind, name = TRANSPORTS[transport]
        self.topic = node.resolve_topic_name(name)
        self._setting = reliability
        self._callback = callback
        self._sub: Any = None
        self.policy = ReliabilityPolicy.BEST_EFFORT
        self.qos_problem = ''          # the last incompatible-QoS event, described
        self.qos_problem_ns = 0        # its monotonic time

    @property
    def reliability(self) -> str:
        """The subscription's reliability now, e.g. 'reliable (auto)'."""
        name = policy_name(self.policy)
        return f'{name} (auto)' if self._setting == 'auto' else name

    def subscribe(self) -> None:
        """Create the subscription with the configured or matched reliability."""
        self._create(self._chosen(self._offered()))

    def refresh(self) -> None:
        """With 'auto', resubscribe when the publishers now found want another reliability."""
        if self._setting != 'auto' or self._sub is None:
            return
        offered = self._offered()
        policy = self._chosen(offered)
        if offered and policy != self.policy:
            self._node.get_logger().info(
                f'{self.topic}: publishers offer {sorted({policy_name(p) for p in offered})}; '
                f'resubscribing {policy_name(policy)}')
            self.destroy()
            self._create(policy)

    def destroy(self) -> None:
        """Unsubscribe."""
        if self._sub is not None:
            self._node.destroy_subscription(self._sub)
            self._sub = None

    def _offered(self) -> list[ReliabilityPolicy]:
        return [info.qos_profile.reliability
                for info in self._node.get_publishers_info_by_topic(self.topic)]

    def _chosen(self, offered: list[ReliabilityPolicy]) -> ReliabilityPolicy:
        if self._setting == 'auto':
            return auto_reliability(offered)
        return ReliabilityPolicy.RELIABLE if self._setting == 'reliable' else \
            ReliabilityPolicy.BEST_EFFORT

    def _create(self, policy: ReliabilityPolicy) -> None:
        self.policy = policy
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._sub = self._node.create_subscription(
            self._kind, self.topic, self._callback, QoSProfile(depth=DEPTH, reliability=policy),
            event_callbacks=events)

    def _on_incompatible_qos(self, event: Any) -> None:
        offers = sorted({
            f'{info.node_namespace.rstrip("/")}/{info.node_name} offers reliability '
            f'{policy_name(info.qos_profile.reliability)}, durability '
            f'{policy_name(info.qos_profile.durability)}'
            for info in self._node.get_publishers_info_by_topic(self.topic)})
        self.qos_problem = (
            f'incompatible QoS ({qos_policy_name_from_kind(event.last_policy_kind)}) on '
            f'{self.topic}: this subscription requests reliability {policy_name(self.policy)}, '
            f'durability volatile; {"; ".join(offers) or "a publisher"}. Set '
            f'image_reliability:=auto (docs/node.md, QoS)')
        self.qos_problem_ns = time.monotonic_ns()
        self._node.get_logger().error(self.qos_problem, throttle_duration_sec=30.0)
