"""vpr_node: a lifecycle node that turns camera images into place matches in a geotagged map.

configure builds the mode object (``modes.py``: localisation or loop closure), which loads
backbone, head and map (slow, timed); activate subscribes to ``image`` or ``image/compressed``
(``camera_input.py``); deactivate and cleanup release them, after the frames in flight have
finished (``gate.py``). With ``autostart`` (the default) the node walks through configure and
activate itself. Frames go to a one-slot worker thread (newest wins), are decoded here and
handed to the mode, which runs the core and publishes the results. A frame that fails is counted
by cause and logged with a throttle; ``health.py`` turns the counters into the /diagnostics
level. The core's Python logging reaches /rosout through ``logbridge.py``.
See docs/node.md for topics, parameters, QoS and the covariance mapping.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from aesvc_vpr.common.stamps import stamp_ns
from aesvc_vpr.errors import VprError
from aesvc_vpr.images.messages import message_to_rgb
from aesvc_vpr.ros import messages
from aesvc_vpr.ros.camera_input import CameraInput
from aesvc_vpr.ros.diagnostics import failure_cause, NodeStats
from aesvc_vpr.ros.gate import FrameGate
from aesvc_vpr.ros.health import assess, backbone_warning, Observation, stall_window_s
from aesvc_vpr.ros.logbridge import bridge_logging, unbridge
from aesvc_vpr.ros.modes import make_mode, NodeMode
from aesvc_vpr.ros.params import (bounded_descriptor, descriptors, NodeSettings, PARAMS,
                                  settings_from_values, with_value)
from aesvc_vpr.ros.worker import LatestFrameWorker

NODE_NAME = 'vpr_node'
DIAGNOSTICS_PERIOD_S = 1.0
THROTTLE_S = 5.0             # per-frame warnings at most this often
TRANSITION_WAIT_S = 60.0     # deactivate waits this long for the frames in flight


def share_cores(workers: int) -> None:
    """Give each of ``workers`` frames in flight its share of the cores as backbone threads.

    Two frames each on one core beat one frame on two cores for throughput: a single ViT-S
    forward pass does not keep both cores busy. OpenCV's resize runs on the frame's own thread:
    its pool waits for a core the backbone or another process holds (INTER_AREA 640x480 -> 224
    took 6.8 ms median with 2 threads and 4.3 ms with 1 at load 9; benchmarks/README.md).
    """
    cv2.setNumThreads(1)
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
        self._log_handler = bridge_logging(self.get_logger())
        self.declare_parameters('', descriptors())
        self.settings: NodeSettings = settings_from_values(
            {p.name: self.get_parameter(p.name).value for p in PARAMS})
        self.mode: NodeMode | None = None      # built at configure, released at cleanup
        self.stats = NodeStats()
        self._worker: LatestFrameWorker | None = None
        self._input: CameraInput | None = None
        self._gate = FrameGate()
        self._configure_error = ''
        self._last_failures = 0
        self._active_since_ns = 0
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
            limit = getattr(self.mode, 'max_prefix_dim', None)
            if limit is not None:        # the descriptor states the loaded head's real bound
                declared = self.describe_parameter('search.prefix_dim')
                self.set_descriptor('search.prefix_dim', bounded_descriptor(declared, *limit))
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
        s = self.settings.node
        self.stats = NodeStats()
        self._last_failures = 0
        self._active_since_ns = time.monotonic_ns()
        self._worker = LatestFrameWorker(self._handle_frame, self.stats.on_dropped,
                                         lambda: self.settings.node.max_rate_hz,
                                         threads=s.workers)
        self._worker.start()
        self._input = CameraInput(self, s.image_transport, s.image_reliability, self._on_image)
        self._input.subscribe()
        result = super().on_activate(state)
        self._gate.admit()
        if self.mode is not None:
            self.mode.activate()
        self.get_logger().info(f'active: listening on {self._input.topic} '
                               f'({self._input.reliability})')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Let the frames in flight finish, unsubscribe and stop the worker; the map stays."""
        self._stop_input()
        self.get_logger().info(f'deactivated after {self.stats.processed} frames; model and '
                               'map stay loaded')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything configure loaded."""
        self.release()
        self.get_logger().info('cleaned up: model and map released')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything before the node is finalized."""
        self.release()
        return super().on_shutdown(state)

    def _stop_input(self) -> None:
        if not self._gate.close(TRANSITION_WAIT_S):
            self.get_logger().error(f'{self._gate.inside} frame(s) still in flight after '
                                    f'{TRANSITION_WAIT_S:.0f} s; their results are dropped')
        self._active_since_ns = 0
        if self._input is not None:
            self._input.destroy()
            self._input = None
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

    def destroy_node(self) -> None:
        """Detach the logging bridge, then destroy the node."""
        unbridge(self._log_handler)
        super().destroy_node()

    # frames ----------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Executor thread: count and hand over; all work happens on the worker thread."""
        self.stats.on_received(time.monotonic_ns())
        if self._worker is not None:
            self._worker.submit(msg)

    def _handle_frame(self, msg: Image | CompressedImage) -> None:
        """Worker thread: process the frame unless a transition has closed the gate."""
        if not self._gate.enter():
            return
        try:
            self._process_frame(msg)
        finally:
            self._gate.leave()

    def _process_frame(self, msg: Image | CompressedImage) -> None:
        """Decode, run the core and publish; count a failure by cause. The hook a mode extends."""
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
        try:
            mode.handle(rgb, msg.header.stamp)
        except Exception as err:  # noqa: BLE001 - one frame's failure must not stop the node
            cause = failure_cause(err)
            self.stats.on_failed(cause, f'{type(err).__name__}: {err}')
            self.get_logger().error(f'frame failed in {cause}: {type(err).__name__}: {err} '
                                    f'(counted in /diagnostics failed_{cause})',
                                    throttle_duration_sec=THROTTLE_S)
            return
        image_ns = stamp_ns(msg)
        # an unstamped image (stamp 0) has no meaningful stamp -> publish latency
        latency_s = (self.get_clock().now().nanoseconds - image_ns) * 1e-9 if image_ns else None
        self.stats.on_processed(time.monotonic_ns(), latency_s, time.perf_counter() - start)

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
        if self._worker is not None:
            self._worker.wake()          # a new max_rate_hz applies to the frame waiting now
        return SetParametersResult(successful=True)

    def _on_timer(self) -> None:
        if self.mode is not None and self.state == 'active':
            self.mode.tick()
        if self._input is not None:
            self._input.refresh()
        self._diagnostics.publish(self._diagnostics_msg())

    def _diagnostics_msg(self) -> DiagnosticArray:
        now_ns = time.monotonic_ns()
        s = self.settings
        values: dict[str, object] = {'state': self.state, 'mode': s.node.mode}
        values.update(self.stats.snapshot(now_ns))
        values['backbone_configured'] = s.backbone.model_name
        if self.mode is not None:
            values.update(self.mode.diagnostics())
        failures = self.stats.bad_frames + int(values['failed_frames'])
        camera = self._input
        observation = Observation(
            state=self.state, topic=camera.topic if camera else '',
            active_since_ns=self._active_since_ns, stall_s=stall_window_s(s.node.max_rate_hz),
            configure_error=self._configure_error,
            qos_problem=camera.qos_problem if camera else '',
            qos_problem_ns=camera.qos_problem_ns if camera else 0,
            new_failures=failures - self._last_failures,
            warnings=backbone_warning(s.backbone.model_name, values.get('backbone')))
        self._last_failures = failures
        if camera is not None:
            values.update({'input_topic': camera.topic, 'input_reliability': camera.reliability})
        health = assess(observation, self.stats, now_ns)
        stamp = self.get_clock().now().to_msg()
        return messages.diagnostics_msg(stamp, self.get_fully_qualified_name(),
                                        bytes([health.level]), health.message, values)


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
