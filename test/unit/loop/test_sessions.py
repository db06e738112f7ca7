"""Keyframe stores are a kind of map; a clock reset starts a session; odometry interpolates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.data.synthetic_route import looping_route
from aesvc_vpr.errors import LoopError, MapError
from aesvc_vpr.loop.detector import LoopClosureDetector
from aesvc_vpr.loop.odometry import OdometryTrack
from aesvc_vpr.retrieval.mapbuild import build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase

S = 1_000_000_000


def _localization_map(root):
    rng = np.random.default_rng(0)
    return MapDatabase.write(root, rng.standard_normal((10, 8)), rng.uniform(0, 9, (10, 2)),
                             '17T', backbone_name='synthetic', backbone_fingerprint='f' * 64)


def _keyframe_detector() -> LoopClosureDetector:
    detector = LoopClosureDetector()
    route = looping_route(laps=0.5, noise=0.15)
    for i, stamp in enumerate(route.stamps_ns):
        detector.process(int(stamp), route.embeddings[i], pose=tuple(route.poses[i]))
    assert detector.keyframes.count > 5
    return detector


def test_keyframes_are_never_written_over_a_localisation_map(tmp_path):
    built = _localization_map(tmp_path / 'map')
    before = (tmp_path / 'map' / 'map.json').read_bytes()
    detector = _keyframe_detector()
    with pytest.raises(MapError, match='holds a localization map; it is not overwritten by a '
                                       'keyframes map'):
        detector.keyframes.save(tmp_path / 'map', backbone_name='synthetic',
                                backbone_fingerprint='f' * 64, frame_id='odom')
    assert (tmp_path / 'map' / 'map.json').read_bytes() == before
    np.testing.assert_array_equal(MapDatabase.load(tmp_path / 'map').utm, built.utm)


def test_a_keyframe_store_is_refused_as_a_localisation_map_and_vice_versa(tmp_path):
    detector = _keyframe_detector()
    detector.keyframes.save(tmp_path / 'kf', backbone_name='synthetic',
                            backbone_fingerprint='f' * 64, frame_id='odom')
    with pytest.raises(MapError, match="loop-closure keyframe store .*odometry frame 'odom'"):
        MapDatabase.load(tmp_path / 'kf')
    store = MapDatabase.load(tmp_path / 'kf', kind='keyframes')
    assert store.kind == 'keyframes' and store.count == detector.keyframes.count
    # saving again over its own kind is fine
    detector.keyframes.save(tmp_path / 'kf', backbone_name='synthetic',
                            backbone_fingerprint='f' * 64, frame_id='odom')

    with pytest.raises(MapError, match='holds a keyframes map; it is not overwritten'):
        build_map(GeoImageSet(('never-read.png',), np.zeros((1, 2))), tmp_path / 'kf',
                  PatchGridBackbone(), progress=False)
    localization = _localization_map(tmp_path / 'map')
    with pytest.raises(MapError, match='is a localisation map from build-map, not a '
                                       'loop-closure keyframe store'):
        MapDatabase.load(tmp_path / 'map', kind='keyframes')
    with pytest.raises(LoopError, match='not a loop-closure keyframe store'):
        LoopClosureDetector().keyframes.load_prior(localization)


def test_a_clock_reset_starts_a_new_session_in_the_same_store():
    route = looping_route(laps=1.0, noise=0.15)
    detector = LoopClosureDetector()

    def drive() -> list:
        closures = []
        for i, stamp in enumerate(route.stamps_ns):
            closure = detector.process(int(stamp), route.embeddings[i],
                                       pose=tuple(route.poses[i]))
            closures.append(closure)
        return [c for c in closures if c is not None]

    drive()
    first_keyframes = detector.keyframes.count
    # the same recording again with the same stamps: `ros2 bag play --loop`
    second = drive()
    counts = detector.counters
    assert counts['clock_resets'] == 1
    assert counts['frames_out_of_order'] == 0
    assert detector.keyframes.count > first_keyframes       # the new session adds keyframes
    assert detector.keyframes.n_prior == first_keyframes    # the first session is prior
    # the second lap recognises the places of the first, right from its start
    assert len(second) > 20
    first_stamps = {int(s) for s in route.stamps_ns}
    assert all(c.t_match_ns in first_stamps for c in second)
    early = [c for c in second if c.t_query_ns < route.stamps_ns[0] + 10 * S]
    assert early, 'no loop in the first 10 s of the new session'


def test_small_reordering_is_still_skipped_not_a_reset():
    detector = LoopClosureDetector()
    vector = np.ones(8, np.float32)
    detector.process(10 * S, vector)
    assert detector.process(10 * S - S // 2, vector) is None
    assert detector.counters['frames_out_of_order'] == 1
    assert detector.counters['clock_resets'] == 0


def test_odometry_is_interpolated_between_the_samples_around_a_frame():
    track = OdometryTrack()
    track.add(0, 0.0, 0.0, 3.0)
    track.add(4 * S // 10, 4.0, 2.0, -3.0)        # the yaw wraps through +-pi
    mid = track.at(2 * S // 10, 0.5)
    assert (mid.x_m, mid.y_m) == pytest.approx((2.0, 1.0))
    assert abs(abs(mid.yaw_rad) - math.pi) < 1e-9
    assert mid.path_m == pytest.approx(math.hypot(4.0, 2.0) / 2)
    assert track.at(S // 10, 0.5).x_m == pytest.approx(1.0)
    # past the newest sample: the newest within max_age, never extrapolated; beyond it none
    assert track.at(6 * S // 10, 0.5).x_m == 4.0
    assert track.at(2 * S, 0.5) is None


def test_keyframe_poses_are_interpolated_at_the_frame_stamp():
    detector = LoopClosureDetector()
    detector.add_odometry(10 * S, 0.0, 0.0, 0.0)
    detector.add_odometry(10 * S + 400_000_000, 2.0, 0.0, 0.0)   # 5 m/s
    detector.process(10 * S + 100_000_000, np.ones(8, np.float32))
    assert detector.keyframes.poses[0, 0] == pytest.approx(0.5)
