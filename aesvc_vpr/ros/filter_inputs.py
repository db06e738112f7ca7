"""What the sequence filter hears besides images: odometry on ``odom``, priors on ``initialpose``.

``odom`` (nav_msgs/Odometry) gives the distance travelled between frames: its path length is
kept by ``loop.odometry.OdometryTrack`` and read at each frame's stamp. ``initialpose``
(geometry_msgs/PoseWithCovarianceStamped, what RViz's "2D Pose Estimate" sends) in the map
frame (``frames.MapFrame``: local by default; or in ``frame.utm_frame``, raw UTM) initialises
the belief there and restricts the search to the prior's radius; the filter works in the map's
UTM, so the origin is added. With ``filter.navsat``, sensor_msgs/NavSatFix on ``fix``,
projected into the map's UTM zone (already the filter's frame), reweights the belief by a
Gaussian around each fix. Bad messages are counted and logged with a throttle, never raised:
the node keeps serving.
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
from sensor_msgs.msg import NavSatFix, NavSatStatus

from aesvc_vpr.bags.groundtruth import latlon_to_utm, quaternion_yaw
from aesvc_vpr.common.stamps import stamp_ns
from aesvc_vpr.errors import BagError
from aesvc_vpr.loop.odometry import OdometryTrack
from aesvc_vpr.retrieval.tracking import SequenceLocalizer
from aesvc_vpr.ros.frames import MapFrame

ODOM_DEPTH = 50             # odometry often comes at 100+ Hz; a burst must not be lost
THROTTLE_S = 5.0
NAVSAT_SIGMA_M = 10.0       # a fix without covariance: a typical consumer GPS


class FilterInputs:
    """The odometry and pose-prior subscriptions of localisation mode."""

    def __init__(self, node: LifecycleNode, tracker: SequenceLocalizer, lock: threading.Lock,
                 frame: MapFrame, utm_zone: str = '') -> None:
        """Prepare (not yet subscribe); ``lock`` guards ``tracker`` against the worker thread.

        The tracker works in the map's UTM: a prior in ``frame.map_frame`` gets its origin added.
        """
        self._node = node
        self._utm_zone = utm_zone
        self._tracker = tracker
        self._lock = lock
        self._frame = frame
        self._odometry = OdometryTrack()
        self._odom_lock = threading.Lock()
        self._subscriptions: list[Any] = []
        self.counters = {'priors_received': 0, 'priors_refused': 0, 'navsat_fixes': 0,
                         'navsat_refused': 0}

    def start(self) -> None:
        """Subscribe to ``odom`` (best effort: takes both kinds of source) and ``initialpose``."""
        odom_qos = QoSProfile(depth=ODOM_DEPTH, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._subscriptions = [
            self._node.create_subscription(Odometry, 'odom', self._on_odometry, odom_qos),
            # RViz publishes initialpose reliable, depth 1
            self._node.create_subscription(PoseWithCovarianceStamped, 'initialpose',
                                           self._on_initial_pose, 10),
        ]
        if self._tracker.cfg.navsat:
            self._subscriptions.append(self._node.create_subscription(
                NavSatFix, 'fix', self._on_fix, QoSProfile(
                    depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)))

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
        map_frame, utm_frame = self._frame.map_frame, self._frame.cfg.utm_frame
        if frame and frame not in (map_frame, utm_frame):
            reason = f'frame {frame!r} is neither the map frame {map_frame!r} nor {utm_frame!r}'
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
        utm_xy = xy if frame == utm_frame != map_frame else self._frame.to_utm(xy)
        with self._lock:
            places = self._tracker.set_prior(utm_xy, sigma_m)
        self._node.get_logger().info(
            f'pose prior at ({xy[0]:.1f}, {xy[1]:.1f}) in {frame or map_frame} sigma '
            f'{sigma_m:.1f} m: {places} places' + ('' if places else ' (off the map: ignored)'))

    def _on_fix(self, msg: NavSatFix) -> None:
        """Weigh a GPS fix into the belief (a Gaussian around its UTM position)."""
        reason = ''
        if msg.status.status < NavSatStatus.STATUS_FIX:
            reason = 'no fix'
        elif not (math.isfinite(msg.latitude) and math.isfinite(msg.longitude)):
            reason = 'non-finite latitude or longitude'
        else:
            try:
                xy = latlon_to_utm(np.array([[msg.latitude, msg.longitude]]),
                                   self._utm_zone)[0][0]
            except BagError as err:
                reason = str(err)
        if reason:
            self.counters['navsat_refused'] += 1
            self._node.get_logger().warning(f'NavSatFix ignored: {reason}',
                                            throttle_duration_sec=THROTTLE_S)
            return
        covariance = msg.position_covariance
        known = msg.position_covariance_type != NavSatFix.COVARIANCE_TYPE_UNKNOWN
        sigma_m = self._tracker.cfg.prior_sigma_m or (
            math.sqrt(max(covariance[0], covariance[4], 0.0)) if known else NAVSAT_SIGMA_M)
        with self._lock:
            places = self._tracker.filter.observe_position(xy, max(sigma_m, 1.0))
        self.counters['navsat_fixes' if places else 'navsat_refused'] += 1
