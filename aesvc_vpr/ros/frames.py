"""The frame the node publishes positions in, and the transform that ties it to UTM.

With ``frame.mode: local`` (default) positions are metres east and north of the map's origin
(``MapDatabase.origin_utm``: its first place rounded to a kilometre), in ``map_frame``: small
numbers that a float32 (RViz markers) holds to well under a millimetre, where raw UTM northings
of 4,000,000 m jitter by 0.5 m. ``frame.mode: utm`` publishes raw UTM in ``map_frame``, as
before. Either way the transform ``frame.utm_frame`` -> ``map_frame`` (a translation by the
origin, zero in utm mode; REP-103 axes: x east, y north, no rotation) goes out on the latched
``~/map_origin`` topic, and on ``/tf_static`` when tf2_ros is installed (any ROS install has it).
Inside, the core keeps UTM: outputs are shifted on their way out, pose priors on their way in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
import numpy as np
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from aesvc_vpr.retrieval.localizer import Localization
from aesvc_vpr.ros.params import FrameConfig

ORIGIN_TOPIC = '~/map_origin'
# latched: a subscriber that comes later still gets the one transform sent at configure
ORIGIN_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class MapFrame:
    """Converts between UTM (the map's, the core's) and the published ``map_frame``."""

    def __init__(self, cfg: FrameConfig, map_frame: str, origin_utm: tuple[float, float]) -> None:
        """Publish in ``map_frame``, offset from UTM by ``origin_utm`` in local mode."""
        self.cfg = cfg
        self.map_frame = map_frame
        self.offset = np.array(origin_utm if cfg.mode == 'local' else (0.0, 0.0), np.float64)

    def to_map(self, utm: np.ndarray) -> np.ndarray:
        """(N, 2) UTM easting, northing -> (N, 2) positions in ``map_frame``, float64."""
        return np.asarray(utm, np.float64) - self.offset

    def to_utm(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) positions in ``map_frame`` -> UTM easting, northing, float64."""
        return np.asarray(xy, np.float64) + self.offset

    def localization(self, loc: Localization | None) -> Localization | None:
        """Return ``loc`` with every match's position in ``map_frame`` (None stays None)."""
        if loc is None or not self.offset.any():
            return loc
        east, north = self.offset
        return dataclasses.replace(loc, matches=[
            dataclasses.replace(m, easting=m.easting - east, northing=m.northing - north)
            for m in loc.matches])

    def transform(self, stamp: Time) -> TransformStamped:
        """Return the static transform ``frame.utm_frame`` -> ``map_frame`` (by the origin)."""
        msg = TransformStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = self.cfg.utm_frame
        msg.child_frame_id = self.map_frame
        msg.transform.translation.x, msg.transform.translation.y = map(float, self.offset)
        msg.transform.rotation.w = 1.0
        return msg


class OriginPublisher:
    """``~/map_origin`` (latched TransformStamped) and, with tf2_ros, the static transform."""

    def __init__(self, node: LifecycleNode, frame: MapFrame) -> None:
        """Create the latched publisher, and the static broadcaster when tf2_ros imports."""
        self._node = node
        self._frame = frame
        self._publisher = node.create_publisher(TransformStamped, ORIGIN_TOPIC, ORIGIN_QOS)
        self._broadcaster: Any = None
        try:
            from tf2_ros import StaticTransformBroadcaster   # in every ROS install, not on PyPI
        except ImportError:
            return
        self._broadcaster = StaticTransformBroadcaster(node)

    @property
    def tf(self) -> bool:
        """Whether the transform also goes to /tf_static (tf2_ros is installed)."""
        return self._broadcaster is not None

    def publish(self) -> TransformStamped:
        """Send the transform once (latched: late subscribers get it too); returns it."""
        msg = self._frame.transform(self._node.get_clock().now().to_msg())
        self._publisher.publish(msg)
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(msg)
        return msg

    def destroy(self) -> None:
        """Destroy the publishers (cleanup)."""
        self._node.destroy_publisher(self._publisher)
        if self._broadcaster is not None:
            self._node.destroy_publisher(self._broadcaster.pub_tf)   # its only publisher
            self._broadcaster = None
