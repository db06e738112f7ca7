"""Transitions and parameter changes while frames are in flight (real rclpy, DDS, two workers).

A camera thread floods the node while the test changes the prefix and top_k, deactivates and
cleans up, many times. Nothing may fail, no frame may be processed or published after deactivate
returns, and the node must answer again after each reactivation. Transitions go through the
lifecycle service, as ``ros2 lifecycle set`` sends them.
"""

from __future__ import annotations

import threading

from image_samples import place_image
from rcl_interfaces.msg import Log
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import Harness, image_msg
import torch

ROUNDS = 8
AFTER_DEACTIVATE = 20          # frames published while inactive, in each round


class Camera:
    """Publishes frames with increasing stamps as fast as it can, until stopped."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.sent = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._images = [place_image(i) for i in range(4)]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.h.image_pub.publish(image_msg(self._images[self.sent % 4], 1000 + self.sent))
            with self._cond:
                self.sent += 1
                self._cond.notify_all()

    def wait_sent(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.sent >= count, 30)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_transitions_and_parameter_changes_with_frames_in_flight(ros_context, small_map):
    threads = torch.get_num_threads()    # workers: 2 shares the cores out process-wide
    h = Harness(ros_context, small_map.root, node_name='vpr_node_threads', workers=2)
    rosout: list[Log] = []
    h.received['rosout'] = rosout
    h.tester.create_subscription(Log, '/rosout', h._collector('rosout'),
                                 QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    camera = Camera(h)
    node = h.node
    try:
        for round_ in range(ROUNDS):
            if node.state == 'unconfigured':
                assert h.transition('configure')
            assert h.transition('activate')
            stats = node.stats
            h.wait_for(lambda: stats.processed >= 2, f'round {round_}: frames processed')
            assert h.set_param('search.prefix_dim', 32 if round_ % 2 else 64).successful
            assert h.set_param('match.top_k', 3 + round_ % 3).successful
            h.wait_for(lambda: stats.processed >= 4, f'round {round_}: more frames')
            assert h.transition('deactivate')
            assert node._gate.inside == 0
            processed = stats.processed
            camera.wait_sent(camera.sent + AFTER_DEACTIVATE)
            assert stats.processed == processed, 'a frame was processed after deactivate'
            assert stats.failures == {} and stats.bad_frames == 0, stats.failures
            if round_ % 3 == 2:
                assert h.transition('cleanup')
                assert node.mode is None
    finally:
        camera.stop()
        h.close()
        torch.set_num_threads(threads)
    problems = [m.msg for m in rosout if m.name == 'vpr_node_threads' and
                (m.level >= Log.ERROR or 'not activated' in m.msg or 'failed' in m.msg)]
    assert problems == []
    assert [m for m in rosout if m.msg.startswith('deactivated after')]
