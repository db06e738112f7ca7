"""The node's result publishers, created on configure and enabled while the node is active.

Positions leave in ``map_frame`` (``frames.MapFrame``: local by default, or raw UTM).
"""

from __future__ import annotations

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
import numpy as np
from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Float32MultiArray
from visualization_msgs.msg import MarkerArray

from aesvc_vpr.config import MatchConfig
from aesvc_vpr.retrieval.localizer import Localization
from aesvc_vpr.retrieval.mapdb import MapDatabase
from aesvc_vpr.ros import messages
from aesvc_vpr.ros.frames import MapFrame

DEPTH = 10


class Outputs:
    """~/place_match, ~/candidates, ~/candidate_scores, ~/ranked_candidates and ~/markers."""

    def __init__(self, node: LifecycleNode, mapdb: MapDatabase, frame: MapFrame) -> None:
        """Create the (still disabled) lifecycle publishers of ``node`` for this map."""
        self._node = node
        self._frame = frame
        self._frame_id = frame_id = frame.map_frame
        places = frame.to_map(mapdb.utm)
        self._scale_m = messages.marker_scale_m(places)
        # built once: 10k Point objects take tens of ms; each re-send only restamps it
        self._places = messages.place_markers(places, Time(), frame_id, self._scale_m)
        self._publishers = [
            node.create_lifecycle_publisher(PoseWithCovarianceStamped, '~/place_match', DEPTH),
            node.create_lifecycle_publisher(PoseArray, '~/candidates', DEPTH),
            node.create_lifecycle_publisher(Float32MultiArray, '~/candidate_scores', DEPTH),
            node.create_lifecycle_publisher(MarkerArray, '~/markers', DEPTH),
            node.create_lifecycle_publisher(PointCloud2, '~/ranked_candidates', DEPTH),
        ]
        self._place_match, self._candidates, self._scores, self._markers, self._ranked = \
            self._publishers
        self._probability = node.create_lifecycle_publisher(Float32MultiArray,
                                                            '~/place_probability', DEPTH)
        self._publishers.append(self._probability)

    def publish(self, loc: Localization, stamp: Time, match_cfg: MatchConfig,
                estimate: Localization | None = None, probability: float | None = None,
                xy_covariance: np.ndarray | None = None, estimate_mass: float | None = None,
                min_belief: float = 0.0) -> None:
        """Publish one query's results, all stamped with the query image's stamp.

        ~/place_match carries ``estimate`` (the sequence filter's) when given, else ``loc``'s
        best match, with ``xy_covariance`` when the map is calibrated. It is published when the
        filter's belief within the match radius (``estimate_mass``) reaches ``min_belief``, or,
        without a filter belief, when the best score reaches ``match_cfg.min_score``; on a
        calibrated map ``probability`` must also reach ``match_cfg.min_probability``: a
        sequence estimate is not gated on its frame's own cosine, which the filter overrules.
        ``probability`` (calibrated maps only) goes to ~/place_probability.
        """
        loc = self._frame.localization(loc)
        estimate = self._frame.localization(estimate)
        best = estimate or loc
        confident = probability is None or probability >= match_cfg.min_probability
        if estimate_mass is None:
            passes = bool(best.matches) and best.matches[0].score >= match_cfg.min_score
        else:
            passes = bool(best.matches) and estimate_mass >= min_belief
        if passes and confident:
            self._place_match.publish(messages.place_match_msg(
                best, stamp, self._frame_id, match_cfg.radius_m, xy_covariance))
        if probability is not None:
            self._probability.publish(Float32MultiArray(data=[float(probability)]))
        poses, scores = messages.candidates_msgs(loc, stamp, self._frame_id)
        self._candidates.publish(poses)
        self._scores.publish(scores)
        self._ranked.publish(messages.ranked_candidates_msg(loc, stamp, self._frame_id))
        self._markers.publish(messages.match_markers(loc, stamp, self._frame_id, self._scale_m))

    def publish_places(self) -> None:
        """All map places as RViz points; re-sent periodically so late RViz windows get them."""
        stamp = self._node.get_clock().now().to_msg()
        for marker in self._places.markers:
            marker.header.stamp = stamp
        self._markers.publish(self._places)

    def destroy(self) -> None:
        """Destroy the publishers (cleanup)."""
        for publisher in self._publishers:
            self._node.destroy_lifecycle_publisher(publisher)
