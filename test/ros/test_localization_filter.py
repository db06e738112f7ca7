"""vpr_node on real rclpy and DDS: odometry and pose priors drive the filter; calibrated maps."""

from __future__ import annotations

from geometry_msgs.msg import PoseWithCovarianceStamped
from image_samples import place_image
from nav_msgs.msg import Odometry
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import Harness, image_msg, local_xy
from std_msgs.msg import Float32MultiArray

from aesvc_vpr.retrieval.calibration import (fit_calibration, map_identity_of, match_features,
                                             spread_covariance, store_calibration)
from aesvc_vpr.retrieval.localizer import Localizer
from aesvc_vpr.retrieval.mapdb import MapDatabase
from aesvc_vpr.retrieval.tracking import SequenceLocalizer


@pytest.fixture
def filtered(ros_context, small_map):
    """Start a vpr_node with filter.mode hmm, no speed prior, and odom/initialpose publishers."""
    h = Harness(ros_context, small_map.root, **{
        'filter.mode': 'hmm', 'filter.speed_mps': 0.0, 'filter.contradiction_frames': 2})
    try:
        assert h.node.autostart(), 'vpr_node failed to configure or activate'
        h.wait_subscribed()
        h.odom_pub = h.tester.create_publisher(
            Odometry, 'odom', QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        h.prior_pub = h.tester.create_publisher(PoseWithCovarianceStamped, 'initialpose', 10)
        h.wait_for(lambda: h.odom_pub.get_subscription_count() >= 1
                   and h.prior_pub.get_subscription_count() >= 1, 'odom and initialpose subs')
        yield h
    finally:
        h.close()


def odometry_msg(x: float, sec: int) -> Odometry:
    msg = Odometry()
    msg.header.stamp.sec = sec
    msg.header.frame_id, msg.child_frame_id = 'odom', 'base_link'
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    return msg


def place_match(h: Harness, sec: int) -> PoseWithCovarianceStamped:
    return h.wait_for(lambda: [m for m in h.received['match'] if m.header.stamp.sec == sec],
                      f'place_match stamped {sec}')[0]


def nearest_place(small_map, msg: PoseWithCovarianceStamped) -> int:
    position = msg.pose.pose.position
    return int(np.argmin(np.hypot(*(local_xy(small_map) - [position.x, position.y]).T)))


def test_odometry_drives_the_filter_and_diagnostics_report_the_belief(filtered, small_map):
    h = filtered
    for sec, x in ((9, 0.0), (10, 0.0), (11, 12.5), (12, 30.0), (13, 31.6)):
        h.odom_pub.publish(odometry_msg(x, sec))
    h.wait_for(lambda: h.node.mode.diagnostics().get('filter_odom_accepted') == 5,
               'five odometry samples accepted')
    h.image_pub.publish(image_msg(place_image(3), 10))
    assert nearest_place(small_map, place_match(h, 10)) == 3
    h.image_pub.publish(image_msg(place_image(4), 13))
    assert nearest_place(small_map, place_match(h, 13)) == 4
    # the motion model moved by the odometry path between the two frames (no speed prior)
    assert h.node.mode.tracker.filter.travelled_m == pytest.approx(31.6)
    values = h.wait_for(lambda: 'filter_belief_peak' in h.diagnostic_values()
                        and h.diagnostic_values(), 'belief in diagnostics')
    assert values['filter_mode'] == 'hmm'
    assert 1 / 12 < float(values['filter_belief_peak']) <= 1.0
    assert 0.0 <= float(values['filter_belief_entropy_nats']) < np.log(12)


def test_the_filter_estimate_is_gated_by_its_belief_not_by_the_frame_cosine(filtered,
                                                                            small_map):
    h = filtered
    # a view of place 3 blended with place 7 matches no map place with cosine 1: match.min_score
    # 1 would withhold every frame's own best match
    view = (0.75 * place_image(3) + 0.25 * place_image(7)).astype(np.uint8)
    assert h.set_param('match.min_score', 1.0).successful
    for sec in (40, 41):
        h.image_pub.publish(image_msg(view, sec))
        assert nearest_place(small_map, place_match(h, sec)) == 3
        _, scores = h.wait_result(sec)
        assert scores.data[0] < 1.0          # the frame's best cosine is below match.min_score
    mass = float(h.wait_for(lambda: h.diagnostic_values().get('filter_estimate_mass'),
                            'estimate mass in diagnostics'))
    assert 0.0 < mass <= 1.0
    # a belief threshold above the estimate's mass withholds it; ~/candidates still comes
    assert h.set_param('filter.min_belief', 1.0).successful
    h.image_pub.publish(image_msg(view, 42))
    candidates, _ = h.wait_result(42)
    assert len(candidates.poses) == h.node.settings.match.top_k
    assert not [m for m in h.received['match'] if m.header.stamp.sec == 42]
    assert h.node.mode.tracker.filter.counters.frames == 3


def test_initialpose_restricts_the_search_until_contradicted(filtered, small_map):
    h = filtered
    prior = PoseWithCovarianceStamped()
    prior.header.frame_id = 'map'
    prior.pose.pose.position.x, prior.pose.pose.position.y = map(float, local_xy(small_map)[8])
    prior.pose.covariance[0] = prior.pose.covariance[7] = 25.0     # sigma 5 m: place 8 only
    h.prior_pub.publish(prior)
    h.wait_for(lambda: h.node.mode.tracker.prior_active, 'prior applied')
    # a frame of place 3: ~/candidates keeps the raw ranking, ~/place_match stays in the prior
    h.image_pub.publish(image_msg(place_image(3), 20))
    candidates, _ = h.wait_result(20)
    assert (candidates.poses[0].position.x, candidates.poses[0].position.y) == \
        tuple(local_xy(small_map)[3])
    assert nearest_place(small_map, place_match(h, 20)) == 8
    # contradicted twice running (filter.contradiction_frames): global search again
    h.image_pub.publish(image_msg(place_image(3), 21))
    place_match(h, 21)
    assert not h.node.mode.tracker.prior_active
    assert h.node.mode.tracker.counters['priors_dropped'] == 1
    for sec in range(22, 26):
        h.image_pub.publish(image_msg(place_image(3), sec))
        last = place_match(h, sec)
    assert nearest_place(small_map, last) == 3
    # a prior in another frame is refused and counted, and changes nothing
    prior.header.frame_id = 'odom'
    h.prior_pub.publish(prior)
    h.wait_for(lambda: h.node.mode.diagnostics().get('filter_priors_refused') == 1,
               'prior in the odom frame refused')
    assert not h.node.mode.tracker.prior_active


def test_live_filter_estimates_equal_the_offline_core_frame_by_frame(filtered, small_map):
    h = filtered
    settings = h.node.settings
    offline = SequenceLocalizer(Localizer.from_config(
        settings.backbone, '', str(small_map.root), settings.search, settings.match),
        settings.filter)
    odometry = [0.0, 10.0, 45.0, 80.0, 80.0, 150.0]
    places = [3, 4, 5, 5, 9, 10]
    for i, (place, x) in enumerate(zip(places, odometry)):
        h.odom_pub.publish(odometry_msg(x, 30 + i))
    h.wait_for(lambda: h.node.mode.diagnostics().get('filter_odom_accepted') == len(places),
               'odometry accepted')
    published = 0
    for i, place in enumerate(places):
        sec = 30 + i
        h.image_pub.publish(image_msg(place_image(place), sec))
        h.wait_result(sec)           # candidates come after ~/place_match, when there is one
        live = [m for m in h.received['match'] if m.header.stamp.sec == sec]
        expected = offline.localize(place_image(place), sec * 10**9, odometry[i])
        best = expected.estimate.matches[0]
        # the filter's estimate passes filter.min_belief (0: always); a uniform belief's (the
        # frame's own best match) passes match.min_score
        gate = best.score >= settings.match.min_score if expected.estimate_mass is None else \
            expected.estimate_mass >= settings.filter.min_belief
        assert len(live) == int(gate), f'frame {i}'
        published += len(live)
        if live:
            position = live[0].pose.pose.position
            east, north = small_map.origin_utm       # the core works in UTM, the node local
            assert (position.x, position.y) == (best.easting - east, best.northing - north), i
    assert published >= 4
    assert offline.filter.travelled_m == h.node.mode.tracker.filter.travelled_m == 150.0


def test_calibrated_map_publishes_probability_and_spread_covariance(ros_context, small_map,
                                                                    tmp_path):
    mapdb = MapDatabase.write(tmp_path / 'calibrated', small_map.raw.astype(np.float32),
                              small_map.utm, small_map.utm_zone, yaw=small_map.yaw,
                              backbone_name=small_map.backbone_name,
                              backbone_fingerprint=small_map.backbone_fingerprint)
    rng = np.random.default_rng(0)
    features = np.stack([rng.uniform(0.5, 1.0, 400), rng.exponential(0.05, 400),
                         rng.uniform(0, 2, 400)], 1)
    correct = rng.random(400) < 0.6 * features[:, 0]      # P never reaches 1
    calibration, _ = fit_calibration(features, correct, map_identity_of(mapdb, 64, 5, 25.0))
    store_calibration(mapdb.root, calibration)
    h = Harness(ros_context, mapdb.root)
    received = []
    h.tester.create_subscription(Float32MultiArray, '/vpr_node/place_probability',
                                 received.append, 10)
    try:
        assert h.node.autostart()
        h.wait_subscribed()
        h.image_pub.publish(image_msg(place_image(3), 40))
        candidates, scores = h.wait_result(40)
        match = place_match(h, 40)
        h.wait_for(lambda: received, 'place_probability')
        positions = np.array([[p.position.x, p.position.y] for p in candidates.poses])
        expected_p = calibration.probability(match_features(np.array(scores.data), positions,
                                                            25.0))[0]
        assert received[0].data[0] == pytest.approx(expected_p, abs=1e-6)
        expected_cov = spread_covariance(np.array(scores.data), positions, expected_p, 25.0)
        covariance = np.reshape(match.pose.covariance, (6, 6))
        np.testing.assert_allclose(covariance[:2, :2], expected_cov, rtol=1e-6)
        values = h.wait_for(lambda: 'place_probability' in h.diagnostic_values()
                            and h.diagnostic_values(), 'probability in diagnostics')
        assert values['calibration'].startswith('calibrated')
        # match.min_probability above this frame's probability: candidates, no place_match
        assert expected_p < 0.9
        assert h.set_param('match.min_probability', float(expected_p + 0.05)).successful
        h.image_pub.publish(image_msg(place_image(3), 41))
        h.wait_result(41)
        h.wait_for(lambda: len(received) == 2, 'second place_probability')
        assert not [m for m in h.received['match'] if m.header.stamp.sec == 41]
    finally:
        h.close()


def test_uncalibrated_map_says_so_and_keeps_the_score_covariance(harness):
    values = harness.wait_for(lambda: 'calibration' in harness.diagnostic_values()
                              and harness.diagnostic_values(), 'diagnostics')
    assert values['calibration'].startswith('uncalibrated')


def test_navsat_fixes_reweight_the_belief(ros_context, small_map):
    import utm
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    h = Harness(ros_context, small_map.root, **{'filter.mode': 'hmm', 'filter.navsat': True})
    try:
        assert h.node.autostart()
        fix_pub = h.tester.create_publisher(NavSatFix, 'fix', 10)
        h.wait_for(lambda: fix_pub.get_subscription_count() >= 1, 'fix subscription')
        lat, lon = utm.to_latlon(*small_map.utm[6], 17, 'T')
        fix = NavSatFix(latitude=float(lat), longitude=float(lon))
        fix.status.status = NavSatStatus.STATUS_FIX
        fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
        fix.position_covariance[0] = fix.position_covariance[4] = 100.0      # sigma 10 m
        no_fix = NavSatFix(latitude=float(lat), longitude=float(lon))
        no_fix.status.status = NavSatStatus.STATUS_NO_FIX
        fix_pub.publish(no_fix)
        fix_pub.publish(fix)
        h.wait_for(lambda: h.node.mode.diagnostics().get('filter_navsat_fixes') == 1, 'a fix')
        assert h.node.mode.diagnostics()['filter_navsat_refused'] == 1
        with h.node.mode._lock:
            assert int(h.node.mode.tracker.filter.summary().rows[0]) == 6
    finally:
        h.close()


def test_geometric_check_runs_per_frame_and_counts_missing_map_images(harness, small_map):
    h = harness
    assert not h.set_param('match.geometric_check', 'akaze').successful
    assert h.set_param('match.geometric_check', 'orb').successful
    h.image_pub.publish(image_msg(place_image(2), 50))
    # the small map stores no image paths: every candidate counts as unreadable, the retrieval
    # order stands, and the node keeps publishing
    assert nearest_place(small_map, place_match(h, 50)) == 2
    values = h.wait_for(lambda: 'geometric_ms_last' in h.diagnostic_values()
                        and h.diagnostic_values(), 'geometric diagnostics')
    assert int(values['geometric_map_images_unreadable']) == 5
