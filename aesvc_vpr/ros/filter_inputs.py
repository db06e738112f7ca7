"""What the sequence filter hears besides images: odometry on ``odom``, priors on ``initialpose``.

``odom`` (nav_msgs/Odometry) gives the distance travelled between frames: its path length is
kept by ``loop.odometry.OdometryTrack`` and read at each frame's stamp. ``initialpose``
(geometry_msgs/PoseWithCovarianceStamped, what RViz's "2D Pose Estimate" sends) in the map
frame initialises the belief there and restricts the search to the prior's radius. Bad
messages are counted and logged with a throttle, never raised: the node keeps serving.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile, ReliabilityPolicy

from aesvc_vpr.bags.groundtruth import quaternion_yaw
from aesvc_vpr.common.stamps import stamp_ns
from aesvc_vpr.loop.odometry import OdometryTrack
from aesvc_vpr.retrieval.tracking import SequenceLocalizer

ODOM_DEPTH = 50             # odometry often comes at 100+ Hz; a burst must not be lost
THROTTLE_S = 5.0


class FilterInputs:
    """The odometry and pose-prior subscriptions of localisation mode."""

    def __init__(self, node: LifecycleNode, tracker: SequenceLocalizer, lock: threading.Lock,
                 map_frame: str) -> None:
        """Prepare (not yet subscribe); ``lock`` guards ``tracker`` against the worker thread."""
        self._node = node
        self._tracker = tracker
        self._lock = lock
        self._map_frame = map_frame
        self._odometry = OdometryTrack()
        self._odom_lock = threading.Lock()
        self._subscriptions: list[Any] = []
        self.counters = {'priors_received': 0, 'priors_refused': 0}

    def start(self) -> None:
        """Subscribe to ``odom`` (best effort: takes both kinds of source) and ``initialpose``."""
        odom_qos = QoSProfile(depth=ODOM_DEPTH, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._subscriptions = [
            self._node.create_subscription(Odometry, 'odom', self._on_odometry, odom_qos),
            # RViz publishes initialpose reliable, depth 1
            self._node.create_subscription(PoseWithCovarianceStamped, 'initialpose',
                                           self._on_initial_pose, 10),
        ]

    def stop(self) -> None:
        """Unsubscribe."""
        for sub in self._subscriptions:
            self._node.destroy_subscription(sub)
        self._subscriptions = []

    def odometer_at(self, frame_ns: int, max_age_s: float) -> float | None:
        """Odometry path length (m) at a frame's stamp; None when no odometry is near it."""
        with self._odom_lock:
            sample = self._odometry.at(frame_ns, max_age_s)
        return None if sample is None else sample.path_m

    def diagnostics(self) -> dict[str, object]:
        """Odometry and prior counters."""
        with self._odom_lock:
            values: dict[str, object] = {f'filter_{k}': v
                                         for k, v in self._odometry.counters.items()}
        values.update({f'filter_{k}': v for k, v in self.counters.items()})
        return values

    def _on_odometry(self, msg: Odometry) -> None:
        pose = msg.pose.pose
        with self._odom_lock:
            accepted = self._odometry.add(stamp_ns(msg), pose.position.x, pose.position.y,
                                          quaternion_yaw(pose.orientation))
        if not accepted:
            self._node.get_logger().warning(
                'bad odometry ignored (non-finite or not newer than the last); counts in '
                '/diagnostics', throttle_duration_sec=THROTTLE_S)

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        frame = msg.header.frame_id
        position = msg.pose.pose.position
        xy = np.array([position.x, position.y])
        covariance = msg.pose.covariance
        sigma_m = math.sqrt(max(covariance[0], covariance[7], 0.0))
        reason = ''
        if frame and frame != self._map_frame:
            reason = f'frame {frame!r} is not the map frame {self._map_frame!r}'
        elif not np.isfinite(xy).all() or not math.isfinite(sigma_m):
            reason = 'non-finite position or covariance'
        elif sigma_m <= 0 and not self._tracker.cfg.prior_sigma_m:
            reason = 'zero covariance and filter.prior_sigma_m is 0'
        if reason:
            self.counters['priors_refused'] += 1
            self._node.get_logger().warning(f'pose prior ignored: {reason}',
                                            throttle_duration_sec=THROTTLE_S)
            return
        self.counters['priors_received'] += 1
        with self._lock:
            places = self._tracker.set_prior(xy, sigma_m)
        self._node.get_logger().info(
            f'pose prior at ({xy[0]:.1f}, {xy[1]:.1f}) sigma {sigma_m:.1f} m: {places} places'
            + ('' if places else ' (off the map: ignored)'))
