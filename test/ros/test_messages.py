"""ROS messages from a Localization: covariance mapping, REP-103 yaw, alignment, markers."""

from __future__ import annotations

import math

from builtin_interfaces.msg import Time
import numpy as np

from aesvc_vpr.retrieval.localizer import Localization, Match
from aesvc_vpr.ros import messages

STAMP = Time(sec=12, nanosec=34)


def localization(*scores: float, yaw: float = math.pi / 2) -> Localization:
    matches = [Match(i, s, 500_000.0 + i, 4_000_000.0 - i, yaw) for i, s in enumerate(scores)]
    return Localization(12_000_000_034, matches, 0.01, 0.001)


def test_covariance_grows_as_the_score_falls() -> None:
    sigmas = [math.sqrt(messages.pose_covariance(s, 25.0, True)[0]) for s in (1.0, 0.5, 0.25)]
    assert sigmas == [25.0, 50.0, 100.0]                  # sigma_xy = radius_m / score
    floor = messages.pose_covariance(-0.3, 25.0, True)
    assert math.sqrt(floor[0]) == 25.0 / messages.SCORE_FLOOR
    cov = np.reshape(messages.pose_covariance(0.8, 10.0, True), (6, 6))
    assert np.count_nonzero(cov - np.diag(np.diag(cov))) == 0
    assert cov[0, 0] == cov[1, 1]
    assert math.isclose(math.sqrt(cov[5, 5]), messages.YAW_SIGMA_RAD / 0.8)
    assert cov[2, 2] == cov[3, 3] == cov[4, 4] == messages.UNOBSERVED_VARIANCE
    unknown_yaw = np.reshape(messages.pose_covariance(0.8, 10.0, False), (6, 6))
    assert unknown_yaw[5, 5] == messages.UNOBSERVED_VARIANCE
    assert math.sqrt(np.reshape(messages.pose_covariance(0.06, 1.0, True), (6, 6))[5, 5]) == \
        math.pi                                          # yaw sigma capped at pi


def test_place_match_pose_stamp_and_yaw() -> None:
    msg = messages.place_match_msg(localization(0.9, 0.5), STAMP, 'map', 25.0)
    assert msg.header.stamp == STAMP and msg.header.frame_id == 'map'
    pose = msg.pose.pose
    assert (pose.position.x, pose.position.y) == (500_000.0, 4_000_000.0)
    # yaw pi/2 about +z (north-facing in ENU): q = (0, 0, sin(pi/4), cos(pi/4))
    assert math.isclose(pose.orientation.z, math.sqrt(0.5))
    assert math.isclose(pose.orientation.w, math.sqrt(0.5))
    nan_yaw = messages.match_pose(Match(0, 1.0, 1.0, 2.0, float('nan')))
    assert (nan_yaw.orientation.z, nan_yaw.orientation.w) == (0.0, 1.0)


def test_candidates_and_scores_are_aligned_in_rank_order() -> None:
    poses, scores = messages.candidates_msgs(localization(0.9, 0.7, 0.2), STAMP, 'map')
    assert [p.position.x for p in poses.poses] == [500_000.0, 500_001.0, 500_002.0]
    assert np.allclose(scores.data, [0.9, 0.7, 0.2])
    assert scores.layout.dim[0].label == 'rank' and scores.layout.dim[0].size == 3


def test_markers() -> None:
    utm = np.array([[0.0, 0.0], [300.0, 30.0], [150.0, 600.0]])
    assert messages.marker_scale_m(utm) == 2.0          # 600 m extent / 300
    places = messages.place_markers(utm, STAMP, 'map', 2.0).markers[0]
    assert places.ns == 'places' and len(places.points) == 3
    matches = messages.match_markers(localization(1.0, 0.0), STAMP, 'map', 2.0).markers[0]
    assert [c.g for c in matches.colors] == [1.0, 0.0] and [c.r for c in matches.colors] == \
        [0.0, 1.0]


def test_ranked_candidates_carry_stamp_rows_scores_and_exact_utm() -> None:
    loc = Localization(1, [Match(7, 0.9, 4_123_456.789, 512_345.678, 0.5),
                           Match(2, 0.4, 4_123_400.001, 512_300.002, float('nan'))], 0.0, 0.0)
    msg = messages.ranked_candidates_msg(loc, STAMP, 'map')
    assert (msg.header.stamp, msg.header.frame_id) == (STAMP, 'map')
    assert {f.name for f in msg.fields} == {'x', 'y', 'z', 'yaw', 'score', 'map_row'}
    points = messages.ranked_candidates(msg)
    assert points['map_row'].tolist() == [7, 2]
    assert points['x'].tolist() == [4_123_456.789, 4_123_400.001]   # float64: no jitter
    assert points['y'].tolist() == [512_345.678, 512_300.002]
    assert np.allclose(points['score'], [0.9, 0.4]) and points['yaw'].tolist() == [0.5, 0.0]
    msg.fields[4].name = 'other'
    try:
        messages.ranked_candidates(msg)
    except ValueError as err:
        assert 'not a ranked-candidates cloud' in str(err)
    else:
        raise AssertionError('a foreign layout was read')
