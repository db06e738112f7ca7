"""vpr_node plus a tester node on a real executor: the driver of every ROS test."""

from __future__ import annotations

from pathlib import Path
import threading
import time
from typing import Any, Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseWithCovarianceStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Float32MultiArray

from aesvc_vpr.ros.node import VprNode

PLACES = 12
TIMEOUT_S = 20.0


class Harness:
    """vpr_node plus a tester node (camera publisher, output listener) on one real executor."""

    def __init__(self, context: Any, map_root: Path, node_name: str = 'vpr_node',
                 **overrides: Any) -> None:
        """Start vpr_node (renamed ``node_name`` when given) with ``overrides`` as parameters.

        A test that reads /rosout gives its node a name of its own: rcl keeps one /rosout
        publisher per logger name, so an earlier ``vpr_node`` of this process that is finalised
        late can take the new node's /rosout publisher with it.
        """
        # filter.mode off: these tests check each frame's own match (hmm is the node's default;
        # the filter's tests ask for it)
        params = {'backbone.model_name': 'patchgrid', 'map_path': str(map_root),
                  'autostart': False, 'search.prefix_dim': 64, 'filter.mode': 'off',
                  **overrides}
        remap = [] if node_name == 'vpr_node' else ['--ros-args', '-r', f'__node:={node_name}']
        self.name = node_name
        self.node = VprNode(context=context, cli_args=remap, parameter_overrides=[
            Parameter(k, value=v) for k, v in params.items()])
        self.tester = rclpy.create_node('vpr_tester', context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.tester.create_publisher(Image, 'image', qos)
        self.compressed_pub = self.tester.create_publisher(CompressedImage, 'image/compressed',
                                                           qos)
        self.received: dict[str, list[Any]] = {k: [] for k in
                                               ('match', 'candidates', 'scores', 'diagnostics',
                                                'ranked')}
        self._cond = threading.Condition()
        for key, kind, topic in (('match', PoseWithCovarianceStamped, f'/{node_name}/place_match'),
                                 ('candidates', PoseArray, f'/{node_name}/candidates'),
                                 ('scores', Float32MultiArray, f'/{node_name}/candidate_scores'),
                                 ('diagnostics', DiagnosticArray, '/diagnostics'),
                                 ('ranked', PointCloud2, f'/{node_name}/ranked_candidates')):
            self.tester.create_subscription(kind, topic, self._collector(key), qos)
        self.params = AsyncParameterClient(self.tester, node_name)
        self._lifecycle: Any = None
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _collector(self, key: str) -> Callable[[Any], None]:
        def collect(msg: Any) -> None:
            with self._cond:
                self.received[key].append(msg)
                self._cond.notify_all()
        return collect

    def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        """Block until predicate() is truthy (checked on every message); fail after a timeout."""
        deadline = time.monotonic() + TIMEOUT_S
        with self._cond:
            while not (result := predicate()):
                if time.monotonic() > deadline:
                    pytest.fail(f'timed out waiting for {what}')
                self._cond.wait(0.1)
        return result

    def wait_result(self, sec: int, nanosec: int = 0) -> tuple[PoseArray, Float32MultiArray]:
        """Return the candidates and aligned scores published for the frame sec.nanosec."""
        def find() -> tuple[PoseArray, Float32MultiArray] | None:
            for i, msg in enumerate(self.received['candidates']):
                stamp = msg.header.stamp
                if (stamp.sec, stamp.nanosec) == (sec, nanosec) \
                        and len(self.received['scores']) > i:
                    return msg, self.received['scores'][i]
            return None
        return self.wait_for(find, f'candidates stamped {sec}.{nanosec}')

    @property
    def camera_pub(self) -> Any:
        """The publisher of the node's ``image_transport``."""
        compressed = self.node.settings.node.image_transport == 'compressed'
        return self.compressed_pub if compressed else self.image_pub

    def wait_subscribed(self) -> None:
        self.wait_for(lambda: self.camera_pub.get_subscription_count() >= 1,
                      'node subscription')

    def diagnostic_status(self) -> Any:
        """Return the latest vpr_node DiagnosticStatus (None before the first)."""
        for msg in reversed(self.received['diagnostics']):
            for status in msg.status:
                if status.name.endswith(self.name):
                    return status
        return None

    def transition(self, label: str) -> bool:
        """Trigger a lifecycle transition through the node's service, as ros2 lifecycle does.

        On the executor thread, like a lifecycle manager's request, so it never races the
        executor's wait set.
        """
        if self._lifecycle is None:
            self._lifecycle = self.tester.create_client(ChangeState, f'/{self.name}/change_state')
        assert self._lifecycle.wait_for_service(TIMEOUT_S)
        ids = {'configure': Transition.TRANSITION_CONFIGURE,
               'activate': Transition.TRANSITION_ACTIVATE,
               'deactivate': Transition.TRANSITION_DEACTIVATE,
               'cleanup': Transition.TRANSITION_CLEANUP}
        future = self._lifecycle.call_async(
            ChangeState.Request(transition=Transition(id=ids[label])))
        self.wait_for(future.done, f'transition {label}')
        return future.result().success

    def set_param(self, name: str, value: Any) -> Any:
        """Set a parameter through the parameter service, as ``ros2 param set`` does."""
        assert self.params.wait_for_services(TIMEOUT_S)
        future = self.params.set_parameters([Parameter(name, value=value)])
        self.wait_for(future.done, f'set {name}')
        return future.result().results[0]

    def diagnostic_values(self) -> dict[str, str]:
        """Key-values of the latest vpr_node diagnostics message ({} before the first)."""
        status = self.diagnostic_status()
        return {kv.key: kv.value for kv in status.values} if status else {}

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(5.0)
        self.node.release()
        self.node.destroy_node()
        self.tester.destroy_node()


def local_xy(mapdb: Any) -> np.ndarray:
    """(N, 2) map places as the node publishes them by default: UTM minus the map's origin."""
    return mapdb.utm - np.array(mapdb.origin_utm)


def image_msg(rgb: np.ndarray, sec: int, nanosec: int = 0, encoding: str = 'rgb8') -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                step=rgb.shape[1] * 3, data=rgb.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = 'camera'
    return msg


def compressed_msg(data: bytes, sec: int, fmt: str = 'png') -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec = sec
    return msg


def started(context, map_root, **overrides) -> Iterator[Harness]:
    """Yield an active vpr_node with ``overrides``, the tester subscribed; close it after."""
    h = Harness(context, map_root, **overrides)
    try:
        assert h.node.autostart(), 'vpr_node failed to configure or activate'
        h.wait_subscribed()
        yield h
    finally:
        h.close()
