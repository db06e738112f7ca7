"""vpr_node's /diagnostics tell the truth, and its log reaches /rosout (real rclpy and DDS).

Core failures are injected by replacing the map's localizer method on the live node: ROS,
DDS, the executor and the worker are real; only the frame's fate is chosen by the test.
"""

from __future__ import annotations

from image_samples import place_image
import pytest
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import Harness, image_msg
from sensor_msgs.msg import Image

from aesvc_vpr.backbone.registry import AUTO_MODEL
from aesvc_vpr.backbone.weights import find_weights
from aesvc_vpr.errors import BackboneError, WeightsError
from aesvc_vpr.ros.health import FAILING_FRAMES

OK, WARN, ERROR = b'\x00', b'\x01', b'\x02'


def status_where(h, predicate, what):
    return h.wait_for(lambda: (st := h.diagnostic_status()) and predicate(st) and st, what)


# The node gets a name of its own (see Harness): with the shared name, this test saw nothing on
# /rosout after about fifteen earlier vpr_node lifecycles in the process.
def test_core_log_lines_reach_rosout_with_the_node_name(ros_context, small_map) -> None:
    h = Harness(ros_context, small_map.root, node_name='vpr_node_rosout')
    try:
        lines: list[Log] = []
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        h.tester.create_subscription(Log, '/rosout', h._collector('rosout'), qos)
        h.received['rosout'] = lines
        assert h.node.autostart()
        h.wait_subscribed()
        # a node line on /rosout shows the subscription has matched the node's publisher (lines
        # from before the match may or may not be replayed, depending on DDS discovery order)
        h.wait_for(lambda: [m for m in lines if m.name == 'vpr_node_rosout'], 'a vpr_node line')
        # then a core line written while the node runs: the re-index logs from the localizer
        assert h.set_param('search.prefix_dim', 32).successful
        line = h.wait_for(lambda: [m for m in lines if '[aesvc_vpr.retrieval.localizer] '
                                   'searching prefix 32' in m.msg], 'a core line on /rosout')[0]
        assert line.name == 'vpr_node_rosout' and line.level == Log.INFO
        h.node.trigger_deactivate()
        h.wait_for(lambda: [m for m in lines if m.msg.startswith('deactivated after')],
                   'the deactivate line on /rosout')
    finally:
        h.close()


def test_no_input_warns_then_a_result_is_ok(harness) -> None:
    h = harness
    status = status_where(h, lambda st: st.level == WARN, 'WARN before any image')
    assert status.message == 'no images on /image yet'
    h.image_pub.publish(image_msg(place_image(1), 10))
    h.wait_result(10)
    status = status_where(h, lambda st: st.level == OK, 'OK after a result')
    assert status.message == 'localising'


def test_core_failures_are_counted_by_cause_and_every_frame_failing_is_an_error(harness):
    h = harness
    localizer = h.node.mode.localizer
    errors = [BackboneError('simulated: out of memory')] * FAILING_FRAMES + [RuntimeError('x')]

    def failing_embed(*args, **kwargs):
        raise errors.pop(0)

    localizer.embed = failing_embed         # the backbone stage of every frame
    for i in range(FAILING_FRAMES + 1):
        h.image_pub.publish(image_msg(place_image(i), 20 + i))
        h.wait_for(lambda: h.node.stats.consecutive_failures == i + 1, f'failure {i + 1}')
    status = status_where(h, lambda st: st.level == ERROR, 'ERROR when every frame fails')
    assert 'every frame fails' in status.message and 'RuntimeError: x' in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values['failed_backbone'] == str(FAILING_FRAMES)
    assert values['failed_bug_RuntimeError'] == '1'
    assert values['failed_frames'] == str(FAILING_FRAMES + 1) and values['processed'] == '0'
    assert h.node.state == 'active' and not h.received['candidates']
    del localizer.embed                    # the class's method again
    h.image_pub.publish(image_msg(place_image(3), 30))
    h.wait_result(30)
    status_where(h, lambda st: st.level == OK, 'OK once frames succeed again')


def test_rate_cap_has_a_floor_and_a_change_applies_to_the_waiting_frame(harness) -> None:
    h = harness
    refused = h.set_param('max_rate_hz', 0.001)
    assert not refused.successful and 'or >= 0.1' in refused.reason
    assert h.set_param('max_rate_hz', 0.1).successful     # one frame per 10 s
    h.image_pub.publish(image_msg(place_image(1), 40))
    h.wait_result(40)
    h.image_pub.publish(image_msg(place_image(2), 41))    # held by the cap ...
    h.wait_for(lambda: h.node.stats.received == 2, 'second frame received')
    assert h.set_param('max_rate_hz', 0.0).successful     # ... until the cap is lifted
    h.wait_result(41)


def test_incompatible_qos_is_an_error_naming_both_settings(ros_context, small_map) -> None:
    h = Harness(ros_context, small_map.root, image_reliability='reliable')
    try:
        sensor = h.tester.create_publisher(
            Image, 'image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        assert h.node.autostart()
        status = status_where(h, lambda st: st.level == ERROR, 'incompatible QoS ERROR')
        assert 'incompatible QoS (RELIABILITY) on /image' in status.message
        assert 'requests reliability reliable' in status.message
        assert 'vpr_tester offers reliability best_effort' in status.message
        sensor.publish(image_msg(place_image(1), 50))
        assert h.node.stats.received == 0
    finally:
        h.close()


def test_auto_reliability_connects_to_a_best_effort_camera(ros_context, small_map) -> None:
    h = Harness(ros_context, small_map.root)      # image_reliability: auto (default)
    try:
        sensor = h.tester.create_publisher(
            Image, 'image', QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        h.wait_for(lambda: len(h.node.get_publishers_info_by_topic('/image')) == 2,
                   'both tester publishers discovered')
        assert h.node.autostart()
        h.wait_for(lambda: sensor.get_subscription_count() == 1, 'matched the camera')
        sensor.publish(image_msg(place_image(5), 60))
        h.wait_result(60)
        values = h.wait_for(lambda: (v := h.diagnostic_values()).get('processed') == '1' and v,
                            'diagnostics')
        assert values['input_reliability'] == 'best_effort (auto)'
    finally:
        h.close()


def test_a_dinov2_configuration_running_patchgrid_warns(ros_context, small_map) -> None:
    try:
        find_weights(AUTO_MODEL, '', False)
        pytest.skip('DINOv2 weights are installed here, so auto does not fall back')
    except WeightsError:
        pass        # 'auto' falls back to the weights-free baseline
    h = Harness(ros_context, small_map.root, **{'backbone.model_name': 'auto'})
    try:
        assert h.node.autostart()
        h.wait_subscribed()
        h.image_pub.publish(image_msg(place_image(2), 70))
        h.wait_result(70)
        status = status_where(h, lambda st: 'processed' in {kv.key for kv in st.values} and
                              {kv.key: kv.value for kv in st.values}['processed'] == '1',
                              'diagnostics after a result')
        values = {kv.key: kv.value for kv in status.values}
        assert (values['backbone'], values['backbone_configured']) == ('patchgrid', 'auto')
        assert status.level == WARN
        assert status.message.startswith("backbone.model_name is 'auto' but the weights-free")
    finally:
        h.close()
