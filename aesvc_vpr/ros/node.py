"""vpr_node: a lifecycle node that turns camera images into place matches in a geotagged map.

configure builds the mode object (``modes.py``: localisation or loop closure), which loads
backbone, head and map (slow, timed); activate subscribes to ``image`` and ``image/compressed``;
deactivate and cleanup release them. With ``autostart`` (the default) the node walks through
configure and activate itself. Frames go to a one-slot worker thread (newest wins), are decoded
here and handed to the mode, which runs the core and publishes the results.
See docs/node.md for topics, parameters, QoS and the covariance mapping.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from aesvc_vpr.common.stamps import stamp_ns
from aesvc_vpr.errors import VprError
from aesvc_vpr.images.messages import message_to_rgb
from aesvc_vpr.ros import messages
from aesvc_vpr.ros.diagnostics import NodeStats
from aesvc_vpr.ros.modes import make_mode, NodeMode
from aesvc_vpr.ros.params import (descriptors, NodeSettings, PARAMS, settings_from_values,
                                  with_value)
from aesvc_vpr.ros.worker import LatestFrameWorker

NODE_NAME = 'vpr_node'
DIAGNOSTICS_PERIOD_S = 1.0
THROTTLE_S = 5.0             # per-frame warnings at most this often


def image_qos(reliability: str) -> QoSProfile:
    """Depth 1: a slow consumer should see the newest frame, never a backlog."""
    policy = ReliabilityPolicy.RELIABLE if reliability == 'reliable' else \
        ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=1, reliability=policy)


def share_cores(workers: int) -> None:
    """Give each of ``workers`` frames in flight its share of the cores as backbone threads.

    Two frames each on one core beat one frame on two cores for throughput: a single ViT-S
    forward pass does not keep both cores busy.
    """
    if workers > 1:
        import torch     # only here: the weights-free backbone runs without it
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


class VprNode(LifecycleNode):
    """The place-recognition node; construct, then ``autostart()`` or drive it by lifecycle."""

    def __init__(self, **kwargs: Any) -> None:
        """Declare all parameters from the table and validate them.

        Raises:
            ConfigError: a parameter value the config dataclasses refuse.
        """
        super().__init__(NODE_NAME, **kwargs)
        self.declare_parameters('', descriptors())
        self.settings: NodeSettings = settings_from_values(
            {p.name: self.get_parameter(p.name).value for p in PARAMS})
        self.mode: NodeMode | None = None      # built at configure, released at cleanup
        self.stats = NodeStats()
        self._worker: LatestFrameWorker | None = None
        self._subscriptions: list[Any] = []
        self._configure_error = ''
        self._last_bad_frames = 0
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_timer)

    @property
    def state(self) -> str:
        """Lifecycle state label: unconfigured, inactive, active, finalized."""
        return self._state_machine.current_state[1]

    def autostart(self) -> bool:
        """Configure and activate; False (reason already logged) if either step fails."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    # lifecycle transitions -------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the configured mode (loads backbone, head, map: slow); FAILURE with a reason."""
        s = self.settings
        start = time.perf_counter()
        try:
            share_cores(s.node.workers)
            self.mode = make_mode(self, s)
        except (VprError, OSError) as err:
            self._configure_error = str(err)
            self.get_logger().error(f'configure failed: {err}')
            return TransitionCallbackReturn.FAILURE
        except Exception as err:  # a bug: rclpy would swallow it silently, so say it once
            self._configure_error = f'{type(err).__name__}: {err}'
            self.get_logger().error(f'configure failed: {self._configure_error}\n'
                                    f'{traceback.format_exc()}')
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ''
        self.get_logger().info(f'configured in {time.perf_counter() - start:.1f} s: '
                               f'{self.mode.summary()}')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the worker, subscribe to the camera and enable the publishers."""
        self.stats = NodeStats()
        self._worker = LatestFrameWorker(self._handle_frame, self.stats.on_dropped,
                                         lambda: self.settings.node.max_rate_hz,
                                         threads=self.settings.node.workers)
        self._worker.start()
        qos = image_qos(self.settings.node.image_reliability)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self._subscriptions = [
            self.create_subscription(Image, 'image', self._on_image, qos,
                                     event_callbacks=events),
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image, qos,
                                     event_callbacks=events),
        ]
        result = super().on_activate(state)
        if self.mode is not None:
            self.mode.activate()
        self.get_logger().info(f'active: listening on {self._subscriptions[0].topic_name} and '
                               f'{self._subscriptions[1].topic_name} '
                               f'({self.settings.node.image_reliability})')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker; the model and map stay loaded."""
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything configure loaded."""
        self.release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything before the node is finalized."""
        self.release()
        return super().on_shutdown(state)

    def _stop_input(self) -> None:
        for sub in self._subscriptions:
            self.destroy_subscription(sub)
        self._subscriptions = []
        if self.mode is not None:
            self.mode.deactivate()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def release(self) -> None:
        """Stop input and drop publishers and the loaded model and map (cleanup, shutdown)."""
        self._stop_input()
        if self.mode is not None:
            self.mode.release()          # loop closure saves its keyframe map here
            self.mode = None

    # frames ----------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Executor thread: count and hand over; all work happens on the worker thread."""
        self.stats.on_received(time.monotonic_ns())
        if self._worker is not None:
            self._worker.submit(msg)

    def _handle_frame(self, msg: Image | CompressedImage) -> None:
        """Worker thread: decode, run the core and publish. The hook a new mode extends."""
        start = time.perf_counter()
        try:
            rgb = message_to_rgb(msg, self.settings.node.max_image_pixels)
        except VprError as err:
            self.stats.on_bad_frame(str(err))
            self.get_logger().warning(f'bad frame skipped: {err}',
                                      throttle_duration_sec=THROTTLE_S)
            return
        mode = self.mode
        if mode is None:
            return
        mode.handle(rgb, msg.header.stamp)
        image_ns = stamp_ns(msg)
        # an unstamped image (stamp 0) has no meaningful stamp -> publish latency
        latency_s = (self.get_clock().now().nanoseconds - image_ns) * 1e-9 if image_ns else None
        self.stats.on_processed(time.monotonic_ns(), latency_s, time.perf_counter() - start)

    def _on_incompatible_qos(self, event: Any) -> None:
        other = 'best_effort' if self.settings.node.image_reliability == 'reliable' else 'reliable'
        self.get_logger().warning(
            f'a camera publisher offers QoS incompatible with image_reliability='
            f'{self.settings.node.image_reliability}; its frames are not received. Set '
            f'image_reliability:={other} (see docs/node.md, QoS)', throttle_duration_sec=30.0)

    # parameters and diagnostics --------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate run-time changes with the dataclasses; apply a new prefix to the index."""
        try:
            settings = self.settings
            for p in params:
                settings = with_value(settings, p.name, p.value)
            if self.mode is not None:
                self.mode.reconfigure(settings)
        except VprError as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.settings = settings
        return SetParametersResult(successful=True)

    def _on_timer(self) -> None:
        if self.mode is not None and self.state == 'active':
            self.mode.tick()
        self._diagnostics.publish(self._diagnostics_msg())

    def _diagnostics_msg(self) -> DiagnosticArray:
        values: dict[str, object] = {'state': self.state, 'mode': self.settings.node.mode}
        values.update(self.stats.snapshot(time.monotonic_ns()))
        if self.mode is not None:
            values.update(self.mode.diagnostics())
        new_bad = self.stats.bad_frames - self._last_bad_frames
        self._last_bad_frames = self.stats.bad_frames
        if self._configure_error:
            level, message = DiagnosticStatus.ERROR, f'configure failed: {self._configure_error}'
        elif new_bad:
            level = DiagnosticStatus.WARN
            message = f'{new_bad} bad frames: {self.stats.last_error}'
        elif self.state != 'active':
            level, message = DiagnosticStatus.WARN, self.state
        else:
            level, message = DiagnosticStatus.OK, 'active'
        stamp = self.get_clock().now().to_msg()
        return messages.diagnostics_msg(stamp, self.get_fully_qualified_name(), level, message,
                                        values)


def main(args: list[str] | None = None) -> int:
    """Console entry: ``aesvc-vpr-node --ros-args --params-file config/aesvc_vpr.yaml``."""
    try:
        rclpy.init(args=args)
    except Exception as err:  # rcl's argument errors; RCLError is not a public rclpy type
        print(f'error: {NODE_NAME}: {err}', file=sys.stderr)
        return 1
    node = None
    try:
        node = VprNode()
        if node.settings.node.autostart and not node.autostart():
            return 1  # on_configure logged the one-line reason
        rclpy.spin(node)
    except (VprError, ParameterException) as err:
        print(f'error: {NODE_NAME}: {err}', file=sys.stderr)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
