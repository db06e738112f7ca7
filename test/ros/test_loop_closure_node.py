"""vpr_node in loop-closure mode: a looping drive through real rclpy, loops out, map saved.

The rendered town drive (174 frames, odometry = ground truth) is published frame by frame, each
image after its Odometry has been taken; the node publishes stamp-keyed loop closures where the
drive comes home, and saves its keyframes on request and at shutdown for a second session.
"""

from __future__ import annotations

import math
from pathlib import Path
import threading
import time

from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import Harness, image_msg, TIMEOUT_S
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from aesvc_vpr.data.synthetic_route import Route, town_loop_route
from aesvc_vpr.retrieval.mapdb import MapDatabase

RADIUS_M = 10.0
LIO_SAM_TOPIC = '/lio_loop/loop_closure_detection'


@pytest.fixture(scope='module')
def route() -> Route:
    return town_loop_route()


@pytest.fixture
def lio_context():
    """Give a context whose nodes remap ~/loop_closure_stamps to LIO-SAM's topic, as users do."""
    context = rclpy.context.Context()
    rclpy.init(context=context, args=['--ros-args', '-r',
                                      f'/vpr_node/loop_closure_stamps:={LIO_SAM_TOPIC}'])
    yield context
    rclpy.try_shutdown(context=context)


class LoopListener:
    """Collects the loop-closure outputs on the harness's tester node."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.lock = threading.Lock()
        self.got: dict[str, list] = {'closure': [], 'stamps': [], 'pose': []}
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        for key, kind, topic in (('closure', Float64MultiArray, '/vpr_node/loop_closure'),
                                 ('stamps', Float64MultiArray, LIO_SAM_TOPIC),
                                 ('pose', PoseWithCovarianceStamped,
                                  '/vpr_node/loop_closure_pose')):
            h.tester.create_subscription(kind, topic, self._keep(key), qos)
        self.odom_pub = h.tester.create_publisher(Odometry, 'odom', qos)

    def _keep(self, key: str):
        def keep(msg) -> None:
            with self.lock:
                self.got[key].append(msg)
        return keep

    def drive(self, route: Route, frames: range) -> None:
        """Publish odometry then image per frame, waiting until the node has processed each."""
        h = self.h
        h.wait_for(lambda: self.odom_pub.get_subscription_count() >= 1, 'odom subscription')
        detector = h.node.mode.detector
        for i in frames:
            sec, nanosec = divmod(int(route.stamps_ns[i]), 1_000_000_000)
            accepted = detector.counters['odom_accepted']
            self.odom_pub.publish(odometry_msg(route.poses[i], sec, nanosec))
            poll(lambda: detector.counters['odom_accepted'] > accepted, f'odometry {i}')
            done = h.node.stats.processed
            h.image_pub.publish(image_msg(route.images[i], sec, nanosec))
            poll(lambda: h.node.stats.processed > done, f'frame {i} processed')


def poll(predicate, what: str) -> None:
    """Wait for state the node changes without a message to the tester (fine-grained)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f'timed out waiting for {what}')
        time.sleep(0.002)


def odometry_msg(pose: np.ndarray, sec: int, nanosec: int) -> Odometry:
    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id, msg.child_frame_id = 'odom', 'base_link'
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(pose[0]), float(pose[1])
    msg.pose.pose.orientation.z = math.sin(pose[2] / 2)
    msg.pose.pose.orientation.w = math.cos(pose[2] / 2)
    return msg


def start(context, map_root: Path) -> tuple[Harness, LoopListener]:
    h = Harness(context, map_root, mode='loop_closure')
    listener = LoopListener(h)
    assert h.node.autostart(), 'vpr_node failed to configure or activate in loop_closure mode'
    h.wait_subscribed()
    return h, listener


def call_save_map(h: Harness) -> Trigger.Response:
    client = h.tester.create_client(Trigger, '/vpr_node/save_map')
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)
    future = client.call_async(Trigger.Request())
    h.wait_for(future.done, 'save_map response')
    return future.result()


def test_looping_drive_closes_loops_and_saves_its_map(lio_context, route: Route,
                                                      tmp_path: Path) -> None:
    map_root = tmp_path / 'loops'
    h, listener = start(lio_context, map_root)
    try:
        listener.drive(route, range(len(route)))
        loops = h.node.mode.detector.counters['loops']
        h.wait_for(lambda: len(listener.got['closure']) == loops
                   and len(listener.got['stamps']) == loops
                   and len(listener.got['pose']) == loops, 'all loop-closure messages')

        def frame_at(t_s: float) -> int:     # float64 seconds keep ~0.2 us of a 2023 stamp
            return int(np.argmin(np.abs(route.stamps_ns - round(t_s * 1e9))))

        assert loops >= 20
        for msg, pair, pose in zip(*listener.got.values()):
            assert msg.layout.dim[0].label == 't_query,t_match,score,inliers'
            assert list(pair.data) == list(msg.data[:2])          # LIO-SAM's two stamps
            t_query, t_match, score, inliers = msg.data
            q, m = frame_at(t_query), frame_at(t_match)
            assert t_query - t_match >= 30.0 and score >= 0.9 and inliers == -1
            assert np.linalg.norm(route.poses[q, :2] - route.poses[m, :2]) <= RADIUS_M
            stamp = pose.header.stamp
            assert stamp.sec + stamp.nanosec * 1e-9 == pytest.approx(t_query, abs=1e-6)
            assert pose.header.frame_id == 'odom'
            assert (pose.pose.pose.position.x, pose.pose.pose.position.y) == \
                pytest.approx(tuple(route.poses[m, :2]))

        # bad odometry is counted, never fatal
        last = int(route.stamps_ns[-1])
        listener.odom_pub.publish(odometry_msg(np.array([np.nan, 0.0, 0.0]), last // 10**9 + 1,
                                               0))
        listener.odom_pub.publish(odometry_msg(route.poses[0], 1, 0))     # out of order
        h.wait_for(lambda: (h.diagnostic_values().get('loop_odom_nan') == '1'
                            and h.diagnostic_values().get('loop_odom_out_of_order') == '1'),
                   'bad odometry in /diagnostics')
        values = h.diagnostic_values()
        assert values['loop_loops'] == str(loops) and values['mode'] == 'loop_closure'
        assert h.node.state == 'active'

        response = call_save_map(h)
        assert response.success and 'saved' in response.message
        keyframes = h.node.mode.detector.keyframes.count
        assert MapDatabase.load(map_root, kind='keyframes').count == keyframes
    finally:
        h.close()          # shutdown saves again

    # a second session loads the map and closes loops against the first at once
    h, listener = start(lio_context, map_root)
    try:
        assert h.node.mode.detector.keyframes.n_prior == keyframes
        later = Route(route.stamps_ns + 10**13, route.poses, images=route.images)
        listener.drive(later, range(10))
        h.wait_for(lambda: listener.got['closure'], 'a loop closure against the first session')
        t_match = listener.got['closure'][0].data[1]
        assert t_match * 1e9 <= route.stamps_ns[-1] + 1e3
    finally:
        h.close()
