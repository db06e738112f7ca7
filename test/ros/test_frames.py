"""vpr_node's frames on real rclpy and DDS: local map frame, its latched origin, raw UTM mode.

The map lies at a 4,000,000 m northing with positions that are not whole metres, where a float32
(what RViz draws markers with) is only good to 0.25 m: in the local frame they must be exact to
under a centimetre.
"""

from __future__ import annotations

import importlib.util

from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from image_samples import place_image
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import Harness, image_msg, PLACES
from visualization_msgs.msg import MarkerArray

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.retrieval.mapdb import MapDatabase
from aesvc_vpr.ros import messages

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope='module')
def far_map(tmp_path_factory) -> MapDatabase:
    """12 places at a 4,000,000 m northing, positions with centimetres."""
    backbone = PatchGridBackbone()
    i = np.arange(PLACES)
    utm = np.stack([585_512.37 + 30.17 * i, 4_000_700.29 + 10.41 * i], axis=1)
    return MapDatabase.write(tmp_path_factory.mktemp('far_map'),
                             backbone.embed([place_image(k) for k in range(PLACES)]), utm, '17T',
                             yaw=np.zeros(PLACES), backbone_name=backbone.name,
                             backbone_fingerprint=backbone.fingerprint)


def start(ros_context, far_map, **overrides) -> Harness:
    """Start a vpr_node on the far map, with a markers listener subscribed before it activates."""
    h = Harness(ros_context, far_map.root, **overrides)
    h.received['markers'] = []
    h.tester.create_subscription(MarkerArray, '/vpr_node/markers', h._collector('markers'),
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    assert h.node.autostart(), 'vpr_node failed to configure or activate'
    h.wait_subscribed()
    return h


def wait_origin(h: Harness) -> TransformStamped:
    """Subscribe to ~/map_origin after the node published it: it is latched."""
    h.received['origin'] = []
    h.tester.create_subscription(TransformStamped, '/vpr_node/map_origin',
                                 h._collector('origin'), LATCHED)
    return h.wait_for(lambda: h.received['origin'], '~/map_origin')[0]


def markers(h: Harness, ns: str) -> np.ndarray:
    """(N, 2) points of the newest marker of namespace ``ns``, float64 as received."""
    found = h.wait_for(lambda: [m for a in h.received['markers'] for m in a.markers
                                if m.ns == ns], f'markers {ns}')
    return np.array([[p.x, p.y] for p in found[-1].points])


def test_local_frame_positions_are_utm_minus_the_latched_origin(ros_context, far_map) -> None:
    origin = np.array(far_map.origin_utm)
    assert tuple(origin) == (586_000.0, 4_001_000.0)
    local = far_map.utm - origin
    h = start(ros_context, far_map)
    try:
        transform = wait_origin(h)
        assert (transform.header.frame_id, transform.child_frame_id) == ('utm', 'map')
        translation = transform.transform.translation
        assert (translation.x, translation.y, translation.z) == (*origin, 0.0)
        assert transform.transform.rotation.w == 1.0
        assert h.node.mode._origin.tf == (importlib.util.find_spec('tf2_ros') is not None)
        h.image_pub.publish(image_msg(place_image(7), 70))
        candidates, _ = h.wait_result(70)
        best = candidates.poses[0].position
        assert (best.x, best.y) == tuple(local[7]) and candidates.header.frame_id == 'map'
        # adding the origin back gives the map's UTM bit for bit (the float64 topics)
        assert (best.x + translation.x, best.y + translation.y) == tuple(far_map.utm[7])
        ranked = messages.ranked_candidates(h.wait_for(lambda: h.received['ranked'], 'ranked')[0])
        assert ranked['map_row'][0] == 7 and (ranked['x'][0], ranked['y'][0]) == tuple(local[7])
        # what RViz draws: float32 positions, exact to < 1 cm at a 4,000,000 m northing
        for ns in ('places', 'matches'):
            points = markers(h, ns)
            truth = local if ns == 'places' else local[[7]]
            assert np.abs(points[:len(truth)].astype(np.float32) - truth).max() < 0.01
        # raw UTM would not be: float32 steps are 0.25 m there
        assert np.abs(far_map.utm.astype(np.float32) - far_map.utm).max() > 0.01
        values = h.wait_for(lambda: 'frame' in h.diagnostic_values() and h.diagnostic_values(),
                            'frame in diagnostics')
        assert values['frame'] == 'map (local)'
        assert values['map_origin_utm'] == '586000.0 4001000.0'
    finally:
        h.close()


def test_utm_mode_publishes_raw_utm_and_a_zero_origin(ros_context, far_map) -> None:
    h = start(ros_context, far_map, **{'frame.mode': 'utm', 'frame.utm_frame': 'earth_utm'})
    try:
        transform = wait_origin(h)
        assert (transform.header.frame_id, transform.child_frame_id) == ('earth_utm', 'map')
        assert (transform.transform.translation.x, transform.transform.translation.y) == (0, 0)
        h.image_pub.publish(image_msg(place_image(4), 40))
        candidates, _ = h.wait_result(40)
        best = candidates.poses[0].position
        assert (best.x, best.y) == tuple(far_map.utm[4])
        np.testing.assert_array_equal(markers(h, 'places'), far_map.utm)
    finally:
        h.close()


def test_pose_priors_in_the_map_frame_and_the_utm_frame_land_on_the_same_place(
        ros_context, far_map) -> None:
    h = start(ros_context, far_map, **{'filter.mode': 'hmm', 'filter.speed_mps': 0.0})
    try:
        prior_pub = h.tester.create_publisher(PoseWithCovarianceStamped, 'initialpose', 10)
        h.wait_for(lambda: prior_pub.get_subscription_count() >= 1, 'initialpose subscription')
        tracker = h.node.mode.tracker
        local = far_map.utm - np.array(far_map.origin_utm)
        for count, (frame, xy) in enumerate((('map', local[8]), ('utm', far_map.utm[8]),
                                             ('', local[8])), start=1):
            prior = PoseWithCovarianceStamped()
            prior.header.frame_id = frame
            prior.pose.pose.position.x, prior.pose.pose.position.y = map(float, xy)
            prior.pose.covariance[0] = prior.pose.covariance[7] = 4.0     # sigma 2 m
            prior_pub.publish(prior)
            h.wait_for(lambda: h.node.mode.diagnostics()['filter_priors_received'] == count,
                       f'prior in {frame!r}')
            with h.node.mode._lock:
                # the filter works in the map's UTM: the prior is at place 8, nowhere else
                assert tracker.prior_active
                assert int(tracker.filter.summary().rows[0]) == 8
    finally:
        h.close()
