"""vpr_node's loop-closure mode: its own keyframe map, odometry in, stamp-keyed loop closures out.

Outputs (all stamped with the query image):

- ``~/loop_closure`` std_msgs/Float64MultiArray ``[t_query, t_match, score, inliers]``, times in
  seconds; ``inliers`` is -1 when the geometric check is off; ``layout.dim[0].label`` names the
  fields. The first two elements are LIO-SAM's ``lio_loop/loop_closure_detection`` format.
- ``~/loop_closure_stamps`` the same as ``[t_query, t_match]`` only: LIO-SAM drops any message
  whose data is not exactly two long, so this is the topic to remap to it
  (docs/loop_closure.md).
- ``~/loop_closure_pose`` geometry_msgs/PoseWithCovarianceStamped: the matched keyframe's
  odometry pose (frame_id of the odometry), when that keyframe had odometry.

Odometry (nav_msgs/Odometry on ``odom``) is optional. The keyframe map is loaded from
``map_path`` at configure when a map is there (multi-session) and saved back to it on the
``~/save_map`` service (std_srvs/Trigger) and at cleanup and shutdown.
"""

from __future__ import annotations

from pathlib import Path
import threading
from typing import Any

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension
from std_srvs.srv import Trigger

from aesvc_vpr.bags.groundtruth import quaternion_yaw
from aesvc_vpr.common.stamps import stamp_ns, time_ns
from aesvc_vpr.errors import ConfigError, VprError
from aesvc_vpr.loop.detector import LoopClosure, LoopClosureDetector
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Match
from aesvc_vpr.retrieval.mapdb import KEYFRAMES, MAP_JSON, MapDatabase
from aesvc_vpr.ros import messages
from aesvc_vpr.ros.filter_inputs import ODOM_DEPTH
from aesvc_vpr.ros.params import NodeSettings

FIELDS = ('t_query', 't_match', 'score', 'inliers')
DEPTH = 10


def loop_closure_msg(closure: LoopClosure, fields: int = len(FIELDS)) -> Float64MultiArray:
    """``[t_query, t_match, score, inliers][:fields]``, seconds as float64, fields named."""
    values = [closure.t_query_ns * 1e-9, closure.t_match_ns * 1e-9, float(closure.score),
              float(closure.inliers)]
    msg = Float64MultiArray(data=values[:fields])
    msg.layout.dim = [MultiArrayDimension(label=','.join(FIELDS[:fields]), size=fields,
                                          stride=fields)]
    return msg


def loop_pose_msg(closure: LoopClosure, stamp: Time, frame_id: str,
                  radius_m: float) -> PoseWithCovarianceStamped:
    """Build the matched keyframe's odometry pose with the score-scaled place-match covariance."""
    x_m, y_m, yaw_rad = closure.match_pose
    match = Match(-1, closure.score, x_m, y_m, yaw_rad)
    msg = PoseWithCovarianceStamped(header=Header(stamp=stamp, frame_id=frame_id))
    msg.pose.pose = messages.match_pose(match)
    msg.pose.covariance = messages.pose_covariance(closure.score, radius_m, True)
    return msg


class LoopClosureMode:
    """Everything the node does differently in ``mode: loop_closure``."""

    def __init__(self, node: LifecycleNode, settings: NodeSettings) -> None:
        """Load backbone and head, and the keyframe map of an earlier session if there is one.

        Raises:
            BackboneError, HeadError, MapError, LoopError: a part does not load or fit.
        """
        self._node = node
        self.settings = settings
        self.encoder = Encoder.load(settings.backbone, settings.node.head_path)
        self.detector = LoopClosureDetector(settings.loop_closure, self._prefix_dim(settings))
        self.map_path = settings.node.map_path
        if self.map_path and (Path(self.map_path) / MAP_JSON).is_file():
            self.detector.keyframes.load_prior(
                MapDatabase.load(self.map_path, self.encoder.backbone, self.encoder.projector,
                                 kind=KEYFRAMES))
        self.odom_frame = ''
        self._lock = threading.Lock()     # executor thread (odometry, service) vs worker thread
        self._closure_pub = node.create_lifecycle_publisher(Float64MultiArray, '~/loop_closure',
                                                            DEPTH)
        self._stamps_pub = node.create_lifecycle_publisher(Float64MultiArray,
                                                           '~/loop_closure_stamps', DEPTH)
        self._pose_pub = node.create_lifecycle_publisher(PoseWithCovarianceStamped,
                                                         '~/loop_closure_pose', DEPTH)
        self._service = node.create_service(Trigger, '~/save_map', self._on_save_map)
        self._odom_sub: Any = None

    def _prefix_dim(self, settings: NodeSettings) -> int | None:
        # nested prefixes are a property of a trained head; raw backbone output is searched whole
        return settings.search.prefix_dim if self.encoder.projector is not None else None

    def summary(self) -> str:
        """Backbone and keyframes loaded, in one line."""
        return (f'backbone {self.encoder.backbone.name}, mode loop_closure, '
                f'{self.detector.keyframes.count} keyframes loaded')

    def activate(self) -> None:
        """Start listening to odometry (best effort: accepts reliable and best-effort sources)."""
        qos = QoSProfile(depth=ODOM_DEPTH, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._odom_sub = self._node.create_subscription(Odometry, 'odom', self._on_odometry, qos)

    def deactivate(self) -> None:
        """Stop listening to odometry."""
        if self._odom_sub is not None:
            self._node.destroy_subscription(self._odom_sub)
            self._odom_sub = None

    def handle(self, rgb: np.ndarray, stamp: Time) -> LoopClosure | None:
        """Worker thread: embed one frame, run the detector, publish a verified loop closure."""
        raw, full = self.encoder.embed([rgb])
        with self._lock:
            closure = self.detector.process(time_ns(stamp),
                                            full[0], raw=raw[0], image=rgb)
            frame_id = self.odom_frame
        if closure is not None:
            self._closure_pub.publish(loop_closure_msg(closure))
            self._stamps_pub.publish(loop_closure_msg(closure, fields=2))
            if closure.match_pose is not None and frame_id:
                self._pose_pub.publish(loop_pose_msg(closure, stamp, frame_id,
                                                     self.settings.match.radius_m))
        return closure

    def reconfigure(self, settings: NodeSettings) -> None:
        """Apply run-time parameter changes (detector settings, prefix size)."""
        with self._lock:
            self.detector.cfg = settings.loop_closure
            prefix = self._prefix_dim(settings)
            if prefix != self.detector.keyframes.prefix_dim:
                self.detector.set_prefix_dim(prefix)
        self.settings = settings

    def save(self) -> str:
        """Write the keyframe map to ``map_path``; returns a one-line outcome.

        Raises:
            MapError, ConfigError: no map_path, or the write failed.
        """
        if not self.map_path:
            raise ConfigError('map_path is empty: set it to the directory the loop-closure map '
                              'is saved to and loaded from')
        with self._lock:
            written = self.detector.keyframes.save(
                self.map_path, backbone_name=self.encoder.backbone.name,
                backbone_fingerprint=self.encoder.backbone.fingerprint,
                projector=self.encoder.projector, frame_id=self.odom_frame)
        if written is None:
            return 'no keyframes yet; nothing saved'
        return f'saved {written.count} keyframes to {self.map_path}'

    def diagnostics(self) -> dict[str, object]:
        """Detector and odometry counters plus map size, for /diagnostics."""
        with self._lock:
            values: dict[str, object] = {f'loop_{k}': v
                                         for k, v in self.detector.counters.items()}
            values['loop_map_keyframes'] = self.detector.keyframes.count
            values['loop_prior_keyframes'] = self.detector.keyframes.n_prior
        values['backbone'] = self.encoder.backbone.name
        return values

    def tick(self) -> None:
        """Nothing periodic in this mode."""

    def release(self, save: bool = True) -> None:
        """Save the map (if a map_path is set) and drop publishers, service and subscription."""
        self.deactivate()
        if save and self.map_path:
            try:
                self._node.get_logger().info(self.save())
            except Exception as err:  # noqa: BLE001 - shutdown must finish; say why it failed
                self._node.get_logger().error(f'saving the loop-closure map failed: {err}')
        for publisher in (self._closure_pub, self._stamps_pub, self._pose_pub):
            self._node.destroy_lifecycle_publisher(publisher)
        self._node.destroy_service(self._service)

    def _on_odometry(self, msg: Odometry) -> None:
        pose = msg.pose.pose
        yaw = quaternion_yaw(pose.orientation)
        with self._lock:
            accepted = self.detector.add_odometry(stamp_ns(msg), pose.position.x,
                                                  pose.position.y, yaw)
            if accepted and msg.header.frame_id:
                self.odom_frame = msg.header.frame_id
        if not accepted:
            self._node.get_logger().warning(
                'bad odometry ignored (non-finite or not newer than the last); counts in '
                '/diagnostics', throttle_duration_sec=5.0)

    def _on_save_map(self, request: Trigger.Request,
                     response: Trigger.Response) -> Trigger.Response:
        try:
            response.message = self.save()
            response.success = True
        except (VprError, OSError) as err:
            response.success, response.message = False, str(err)
        return response
