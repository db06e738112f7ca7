"""ROS messages from a Localization: poses, covariance, scores, RViz markers and diagnostics.

Positions are in ``map_frame`` (x east, y north, metres: UTM minus the map's origin, or raw UTM
with ``frame.mode: utm``; ``frames.py`` shifts them before they get here); yaw is the map image's
heading about +z (REP-103: x east, y north, counter-clockwise). Every message of one query
carries the query image's header.stamp.

Covariance mapping (documented in docs/node.md): a match with cosine score ``s`` gets
``sigma_xy = radius_m / max(s, 0.05)`` and ``sigma_yaw = min(pi / 8 / max(s, 0.05), pi)``, so a
perfect match is trusted to ``match.radius_m`` (the distance that counts as the same place) and
halving the score doubles the sigma. z, roll and pitch are not observed (variance 1e6); neither is
yaw when the map place has no heading.
"""

from __future__ import annotations

import math
from typing import Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray, PoseWithCovarianceStamped, Quaternion
import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Float32MultiArray, Header, MultiArrayDimension
from visualization_msgs.msg import Marker, MarkerArray

from aesvc_vpr.retrieval.localizer import Localization, Match

SCORE_FLOOR = 0.05          # scores below this are treated as this when scaling sigmas
YAW_SIGMA_RAD = math.pi / 8  # yaw sigma of a score-1 match
UNOBSERVED_VARIANCE = 1e6


def pose_covariance(score: float, radius_m: float, yaw_known: bool) -> list[float]:
    """Return the row-major 6x6 covariance (x, y, z, roll, pitch, yaw) for a score."""
    scale = 1.0 / max(score, SCORE_FLOOR)
    sigma_xy = radius_m * scale
    yaw_variance = min(YAW_SIGMA_RAD * scale, math.pi) ** 2 if yaw_known else UNOBSERVED_VARIANCE
    diagonal = [sigma_xy ** 2, sigma_xy ** 2, UNOBSERVED_VARIANCE, UNOBSERVED_VARIANCE,
                UNOBSERVED_VARIANCE, yaw_variance]
    return np.diag(diagonal).ravel().tolist()


def match_pose(match: Match) -> Pose:
    """Return a match's map place as a Pose; unknown yaw (NaN) gives the identity rotation."""
    yaw = 0.0 if math.isnan(match.yaw) else match.yaw
    return Pose(position=Point(x=float(match.easting), y=float(match.northing), z=0.0),
                orientation=Quaternion(z=math.sin(yaw / 2), w=math.cos(yaw / 2)))


def place_match_msg(loc: Localization, stamp: Time, frame_id: str, radius_m: float,
                    xy_covariance: np.ndarray | None = None) -> PoseWithCovarianceStamped:
    """Build the best match (``loc.matches[0]``) with its score-dependent covariance.

    ``xy_covariance`` (2, 2), from a calibrated map, replaces the x/y block (docs/node.md).
    """
    best = loc.matches[0]
    msg = PoseWithCovarianceStamped(header=Header(stamp=stamp, frame_id=frame_id))
    msg.pose.pose = match_pose(best)
    covariance = pose_covariance(best.score, radius_m, not math.isnan(best.yaw))
    if xy_covariance is not None:
        covariance[0], covariance[1] = float(xy_covariance[0, 0]), float(xy_covariance[0, 1])
        covariance[6], covariance[7] = float(xy_covariance[1, 0]), float(xy_covariance[1, 1])
    msg.pose.covariance = covariance
    return msg


def candidates_msgs(loc: Localization, stamp: Time,
                    frame_id: str) -> tuple[PoseArray, Float32MultiArray]:
    """Build the top-k poses in rank order, and their scores aligned index by index."""
    poses = PoseArray(header=Header(stamp=stamp, frame_id=frame_id),
                      poses=[match_pose(m) for m in loc.matches])
    scores = Float32MultiArray(data=[float(m.score) for m in loc.matches])
    scores.layout.dim = [MultiArrayDimension(label='rank', size=len(loc.matches),
                                             stride=len(loc.matches))]
    return poses, scores


# ~/ranked_candidates: one point per candidate, rank order; float64 positions exact (even raw UTM)
CANDIDATE_DTYPE = np.dtype([('x', '<f8'), ('y', '<f8'), ('z', '<f8'), ('yaw', '<f4'),
                            ('score', '<f4'), ('map_row', '<i4')])
_POINT_FIELD_TYPES = {np.dtype('<f8'): PointField.FLOAT64, np.dtype('<f4'): PointField.FLOAT32,
                      np.dtype('<i4'): PointField.INT32}


def ranked_candidates_msg(loc: Localization, stamp: Time, frame_id: str) -> PointCloud2:
    """Build the stamped top-k as a PointCloud2: x, y, z, yaw, score and map_row per point.

    One message carries what ~/candidates and ~/candidate_scores split, so a consumer joins
    it to the image by its header stamp, never by arrival order.
    """
    points = np.zeros(len(loc.matches), CANDIDATE_DTYPE)
    for i, match in enumerate(loc.matches):
        points[i] = (match.easting, match.northing, 0.0,
                     0.0 if math.isnan(match.yaw) else match.yaw, match.score, match.index)
    fields = [PointField(name=name, offset=offset, datatype=_POINT_FIELD_TYPES[dtype], count=1)
              for name, (dtype, offset) in CANDIDATE_DTYPE.fields.items()]
    return PointCloud2(header=Header(stamp=stamp, frame_id=frame_id), height=1,
                       width=len(points), fields=fields, is_bigendian=False,
                       point_step=CANDIDATE_DTYPE.itemsize,
                       row_step=CANDIDATE_DTYPE.itemsize * len(points), data=points.tobytes(),
                       is_dense=True)


def ranked_candidates(msg: PointCloud2) -> np.ndarray:
    """Read ``ranked_candidates_msg`` back: (K,) CANDIDATE_DTYPE records, rank order.

    Raises:
        ValueError: the fields are not this node's layout.
    """
    layout = [(f.name, f.offset, f.datatype) for f in msg.fields]
    expected = [(name, offset, _POINT_FIELD_TYPES[dtype])
                for name, (dtype, offset) in CANDIDATE_DTYPE.fields.items()]
    if layout != expected or msg.point_step != CANDIDATE_DTYPE.itemsize:
        raise ValueError(f'not a ranked-candidates cloud: fields {layout}')
    return np.frombuffer(bytes(msg.data), CANDIDATE_DTYPE, count=msg.width * msg.height)


def marker_scale_m(utm: np.ndarray) -> float:
    """Pick a point size visible at the map's extent: 1/300 of it, at least 0.5 m."""
    if len(utm) == 0:
        return 1.0
    extent = float(np.max(np.ptp(utm, axis=0)))
    return max(extent / 300.0, 0.5)


def place_markers(utm: np.ndarray, stamp: Time, frame_id: str, scale_m: float) -> MarkerArray:
    """Draw all map places as one grey POINTS marker (namespace 'places')."""
    marker = Marker(header=Header(stamp=stamp, frame_id=frame_id), ns='places', id=0,
                    type=Marker.POINTS, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.scale.x = marker.scale.y = scale_m
    marker.color = ColorRGBA(r=0.6, g=0.6, b=0.6, a=0.8)
    marker.points = [Point(x=float(e), y=float(n)) for e, n in utm]
    return MarkerArray(markers=[marker])


def match_markers(loc: Localization, stamp: Time, frame_id: str, scale_m: float) -> MarkerArray:
    """Draw the query's matches as spheres coloured red (score <= 0) to green (score 1)."""
    marker = Marker(header=Header(stamp=stamp, frame_id=frame_id), ns='matches', id=0,
                    type=Marker.SPHERE_LIST, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.scale.x = marker.scale.y = marker.scale.z = 3.0 * scale_m
    marker.points = [match_pose(m).position for m in loc.matches]
    marker.colors = [_score_colour(m.score) for m in loc.matches]
    return MarkerArray(markers=[marker])


def diagnostics_msg(stamp: Time, name: str, level: bytes, message: str,
                    values: Mapping[str, object]) -> DiagnosticArray:
    """Wrap one DiagnosticStatus (level e.g. DiagnosticStatus.OK) with ``values`` as strings."""
    pairs = [KeyValue(key=k, value=_format(v)) for k, v in values.items()]
    status = DiagnosticStatus(level=level, name=name, hardware_id=name, message=message,
                              values=pairs)
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])


def _score_colour(score: float) -> ColorRGBA:
    s = min(max(float(score), 0.0), 1.0)
    return ColorRGBA(r=1.0 - s, g=s, b=0.0, a=1.0)


def _format(value: object) -> str:
    return f'{value:.2f}' if isinstance(value, float) else str(value)
