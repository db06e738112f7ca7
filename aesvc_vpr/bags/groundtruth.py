"""Ground truth at image stamps: pose messages -> a time-sorted track -> interpolated poses.

A pose is only ever interpolated between two track poses that bracket the image stamp and are at
most ``max_gap_s`` apart (or taken as is when one has exactly the image's stamp). Images before
the first pose, after the last, or inside a gap get no ground truth: they are counted and
skipped by the caller, never extrapolated or filled with the nearest pose.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import math
from typing import Iterable, Protocol

import numpy as np
import utm

from aesvc_vpr.errors import BagError

log = logging.getLogger(__name__)


class PoseMessage(Protocol):
    """What a track is built from (``aesvc_vpr.bagio.BagMessage`` fits)."""

    topic: str
    msgtype: str
    stamp_ns: int
    msg: object


@dataclass(frozen=True)
class PoseTrack:
    """Poses sorted by stamp, without duplicate stamps.

    Attributes:
        stamps_ns: (N,) int64, strictly increasing.
        xy: (N, 2) float64 metres: UTM easting/northing for NavSatFix, otherwise x/y in the pose
            messages' frame (which must be the map's frame for scores to mean anything).
        yaw: (N,) float64 rad about +z, NaN where unknown (NavSatFix has no heading).
        frame: the messages' frame_id, or 'UTM <zone>' for NavSatFix.
        utm_zone: zone of NavSatFix-derived positions ('17T'), '' otherwise.
        rejected: messages without a usable pose (no GNSS fix, NaN values).
    """

    stamps_ns: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    frame: str
    utm_zone: str = ''
    rejected: int = 0


@dataclass(frozen=True)
class GroundTruth:
    """Poses at query stamps; rows where ``valid`` is False carry NaN and must be skipped."""

    stamps_ns: np.ndarray   # (M,) int64
    xy: np.ndarray          # (M, 2) float64 metres
    yaw: np.ndarray         # (M,) float64 rad, NaN unknown
    valid: np.ndarray       # (M,) bool

    @property
    def skipped(self) -> int:
        """How many stamps got no ground truth."""
        return int((~self.valid).sum())


def quaternion_yaw(q: object) -> float:
    """Yaw (rad, about +z) of a geometry_msgs Quaternion-like object with x, y, z, w."""
    x, y, z, w = (float(getattr(q, k)) for k in 'xyzw')
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def track_from_messages(messages: Iterable[PoseMessage], utm_zone: str = '') -> PoseTrack:
    """Build a track from Odometry, PoseStamped, PoseWithCovarianceStamped or NavSatFix messages.

    Args:
        messages: pose messages of one topic, in any order.
        utm_zone: force NavSatFix fixes into this zone (the map's); '' uses the first fix's zone.

    Raises:
        BagError: no usable pose at all.
    """
    stamps, xs, ys, yaws, frames = [], [], [], [], set()
    latlon: list[tuple[float, float]] = []
    rejected = 0
    topic = ''
    for m in messages:
        topic = m.topic
        point = _pose_of(m.msg, m.msgtype)
        if point is None or not all(math.isfinite(v) for v in point[:2]):
            rejected += 1
            continue
        stamps.append(m.stamp_ns)
        frames.add(getattr(getattr(m.msg, 'header', None), 'frame_id', ''))
        if m.msgtype == 'sensor_msgs/msg/NavSatFix':
            latlon.append(point[:2])
        else:
            xs.append(point[0])
            ys.append(point[1])
        yaws.append(point[2])
    if not stamps:
        raise BagError(f'pose topic {topic or "(none)"}: no usable pose in {rejected} messages')
    if latlon and xs:
        raise BagError(f'pose topic {topic}: mixes NavSatFix with metric poses')
    zone = ''
    if latlon:
        xy, zone = latlon_to_utm(np.asarray(latlon, np.float64), utm_zone)
        frame = f'UTM {zone}'
    else:
        xy = np.column_stack([xs, ys]).astype(np.float64)
        frame = ', '.join(sorted(frames))
    order = np.argsort(np.asarray(stamps, np.int64), kind='stable')
    stamps_ns = np.asarray(stamps, np.int64)[order]
    keep = np.concatenate([[True], np.diff(stamps_ns) > 0])  # first pose wins on a repeated stamp
    if rejected:
        log.warning('pose topic %s: %d messages without a usable pose were skipped', topic,
                    rejected)
    return PoseTrack(stamps_ns[keep], xy[order][keep], np.asarray(yaws, np.float64)[order][keep],
                     frame, zone, rejected)


def interpolate_poses(track: PoseTrack, stamps_ns: np.ndarray, max_gap_s: float = 0.1
                      ) -> GroundTruth:
    """Poses at the given stamps: linear in position, shortest-angle in yaw.

    Args:
        track: the ground-truth track.
        stamps_ns: (M,) int64 query stamps.
        max_gap_s: the two bracketing poses must be at most this far apart in time.

    Returns:
        GroundTruth with ``valid`` False where no bracketing pair within the gap exists.
    """
    query = np.asarray(stamps_ns, np.int64)
    t = track.stamps_ns
    n = len(t)
    hi = np.searchsorted(t, query, side='left')     # first pose at or after the stamp
    exact = (hi < n) & (t[np.minimum(hi, n - 1)] == query)
    lo = np.clip(hi - 1, 0, n - 1)
    hi_c = np.minimum(hi, n - 1)
    # int64 difference first: float64 cannot hold absolute ns stamps exactly
    gap_ns = t[hi_c] - t[lo]
    bracketed = (hi > 0) & (hi < n) & (gap_ns <= round(max_gap_s * 1e9))
    valid = exact | bracketed
    lo = np.where(exact, hi_c, lo)
    frac = np.where(exact | (gap_ns == 0), 0.0,
                    (query - t[lo]) / np.maximum(gap_ns, 1).astype(np.float64))
    xy = track.xy[lo] + frac[:, None] * (track.xy[hi_c] - track.xy[lo])
    turn = np.angle(np.exp(1j * (track.yaw[hi_c] - track.yaw[lo])))   # wrapped to (-pi, pi]
    yaw = np.angle(np.exp(1j * (track.yaw[lo] + frac * turn)))
    xy[~valid] = np.nan
    yaw[~valid] = np.nan
    return GroundTruth(query, xy, yaw, valid)


def _pose_of(msg: object, msgtype: str) -> tuple[float, float, float] | None:
    """(x, y, yaw) of a pose message, (lat, lon, NaN) of a fix, None without a fix."""
    if msgtype == 'sensor_msgs/msg/NavSatFix':
        if int(msg.status.status) < 0:     # type: ignore[attr-defined]  # STATUS_NO_FIX
            return None
        return float(msg.latitude), float(msg.longitude), math.nan  # type: ignore[attr-defined]
    pose = msg.pose                         # type: ignore[attr-defined]
    yaw_known = True
    if msgtype in ('nav_msgs/msg/Odometry', 'geometry_msgs/msg/PoseWithCovarianceStamped'):
        # a negative yaw variance means "not measured" (make_bag writes it for unknown yaw)
        yaw_known = float(pose.covariance[35]) >= 0.0
        pose = pose.pose                    # (Odometry|PoseWithCovarianceStamped).pose.pose
    yaw = quaternion_yaw(pose.orientation) if yaw_known else math.nan
    return float(pose.position.x), float(pose.position.y), yaw


def latlon_to_utm(latlon: np.ndarray, utm_zone: str) -> tuple[np.ndarray, str]:
    """Project (N, 2) degrees to (N, 2) easting/northing metres, all in one zone.

    Args:
        latlon: (N, 2) latitude, longitude in degrees.
        utm_zone: e.g. '17T'; '' takes the first fix's zone.

    Returns:
        The positions and the zone they are in.

    Raises:
        BagError: a fix outside the zone's range (or outside lat/lon ranges).
    """
    try:
        if utm_zone:
            number, letter = int(utm_zone[:-1]), utm_zone[-1].upper()
        else:
            _, _, number, letter = utm.from_latlon(latlon[0, 0], latlon[0, 1])
        # utm checks the forced zone number and band letter, and the lat/lon ranges
        easting, northing, _, _ = utm.from_latlon(latlon[:, 0], latlon[:, 1],
                                                  force_zone_number=number,
                                                  force_zone_letter=letter)
    except ValueError as err:   # utm's OutOfRangeError is a ValueError
        raise BagError(f'NavSatFix fixes cannot be projected into UTM zone '
                       f'{utm_zone or "of the first fix"}: {err}') from err
    return np.column_stack([easting, northing]).astype(np.float64), f'{number}{letter}'
