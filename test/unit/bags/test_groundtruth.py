"""Ground-truth interpolation: linear position, shortest-angle yaw, and no guessing."""

from __future__ import annotations

from dataclasses import dataclass
import math
from types import SimpleNamespace

from bag_samples import navsatfix, pose_stamped, pose_with_covariance
import numpy as np
import pytest

from aesvc_vpr.bags.groundtruth import (interpolate_poses, PoseTrack, quaternion_yaw,
                                        track_from_messages)
from aesvc_vpr.bags.writer import BagFrame, encode_odometry
from aesvc_vpr.errors import BagError


S = 10**9


@dataclass
class Msg:
    """The fields track_from_messages reads (as bagio.BagMessage has them)."""

    topic: str
    msgtype: str
    stamp_ns: int
    msg: object


def _msg(entry: tuple) -> Msg:
    topic, msgtype, stamp_ns, msg = entry
    return Msg(topic, msgtype, stamp_ns, msg)


def _track(stamps_s, xs, yaws) -> PoseTrack:
    stamps = np.round(np.asarray(stamps_s) * S).astype(np.int64)
    xy = np.column_stack([xs, np.zeros(len(xs))]).astype(np.float64)
    return PoseTrack(stamps, xy, np.asarray(yaws, np.float64), 'map')


def test_position_is_linear_between_the_bracketing_poses():
    track = _track([10.0, 10.1, 10.2], [0.0, 1.0, 5.0], [0.0, 0.0, 0.0])
    truth = interpolate_poses(track, np.array([10.025, 10.1, 10.15]) * S)
    np.testing.assert_allclose(truth.xy[:, 0], [0.25, 1.0, 3.0], atol=1e-9)
    assert truth.valid.all() and truth.skipped == 0


def test_absolute_nanosecond_stamps_keep_their_precision():
    t0 = 1_700_000_000 * S
    track = PoseTrack(np.array([t0, t0 + 4], np.int64), np.array([[0.0, 0.0], [4.0, 8.0]]),
                      np.zeros(2), 'map')
    truth = interpolate_poses(track, np.array([t0 + 1, t0 + 3], np.int64))
    np.testing.assert_allclose(truth.xy, [[1.0, 2.0], [3.0, 6.0]])


def test_yaw_takes_the_short_way_across_pi():
    track = _track([0.0, 0.1], [0.0, 0.0], [math.radians(170), math.radians(-170)])
    truth = interpolate_poses(track, np.array([0.05, 0.075]) * S)
    np.testing.assert_allclose(np.degrees(np.abs(truth.yaw[0])), 180.0, atol=1e-9)
    np.testing.assert_allclose(np.degrees(truth.yaw[1]), -175.0, atol=1e-9)


def test_no_guessing_outside_the_track_or_across_a_gap():
    track = _track([1.0, 1.05, 2.0], [0.0, 1.0, 2.0], [0.0, 0.0, 0.0])
    stamps = np.array([0.99, 1.0, 1.5, 2.0, 2.01]) * S
    truth = interpolate_poses(track, stamps.astype(np.int64), max_gap_s=0.1)
    assert truth.valid.tolist() == [False, True, False, True, False]
    assert truth.skipped == 3
    assert np.isnan(truth.xy[~truth.valid]).all() and np.isnan(truth.yaw[~truth.valid]).all()
    wide = interpolate_poses(track, stamps.astype(np.int64), max_gap_s=1.0)
    assert wide.valid.tolist() == [False, True, True, True, False]   # never extrapolated


def test_track_sorts_and_drops_repeated_stamps():
    stamped = ((3 * S, 3.0), (1 * S, 1.0), (2 * S, 2.0), (2 * S, 99.0))
    entries = [pose_stamped('/p', t, x, 0.0, 0.0) for t, x in stamped]
    track = track_from_messages(_msg(e) for e in entries)
    assert track.stamps_ns.tolist() == [S, 2 * S, 3 * S]
    assert track.xy[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert track.frame == 'map'


def test_every_pose_type_gives_position_and_yaw():
    odom = encode_odometry(BagFrame(S, np.zeros((2, 2, 3), np.uint8), 5.0, 6.0, 0.7))
    unknown = encode_odometry(BagFrame(2 * S, np.zeros((2, 2, 3), np.uint8), 5.0, 6.0))
    for entry in (pose_stamped('/p', S, 5.0, 6.0, 0.7),
                  pose_with_covariance('/p', S, 5.0, 6.0, 0.7),
                  ('/p', 'nav_msgs/msg/Odometry', S, odom)):
        track = track_from_messages([_msg(entry)])
        np.testing.assert_allclose(track.xy[0], [5.0, 6.0])
        np.testing.assert_allclose(track.yaw[0], 0.7, atol=1e-12)
    # an Odometry that marks yaw as not measured (negative variance) has no yaw
    track = track_from_messages([_msg(('/p', 'nav_msgs/msg/Odometry', 2 * S, unknown))])
    assert math.isnan(track.yaw[0])


def test_quaternion_yaw_of_a_tilted_camera():
    # q = q_yaw(30 deg) * q_pitch(20 deg): a camera looking down keeps its heading
    yaw, pitch = math.radians(30), math.radians(20)
    q = SimpleNamespace(x=-math.sin(pitch / 2) * math.sin(yaw / 2),
                        y=math.sin(pitch / 2) * math.cos(yaw / 2),
                        z=math.cos(pitch / 2) * math.sin(yaw / 2),
                        w=math.cos(pitch / 2) * math.cos(yaw / 2))
    assert quaternion_yaw(q) == pytest.approx(yaw)


def test_unusable_tracks_are_errors():
    no_fix = [navsatfix('/fix', S, 40.0, -80.0, status=-1)]
    with pytest.raises(BagError, match='no usable pose in 1 messages'):
        track_from_messages(_msg(e) for e in no_fix)
    mixed = [navsatfix('/fix', S, 40.0, -80.0), pose_stamped('/fix', 2 * S, 0.0, 0.0, 0.0)]
    with pytest.raises(BagError, match='mixes NavSatFix with metric poses'):
        track_from_messages(_msg(e) for e in mixed)
    with pytest.raises(BagError, match='cannot be projected into UTM zone 99Z'):
        track_from_messages([_msg(navsatfix('/fix', S, 40.0, -80.0))], utm_zone='99Z')
