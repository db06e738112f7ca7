"""The /diagnostics verdict: never OK while the node is not localising (times passed in)."""

from __future__ import annotations

from aesvc_vpr.errors import BackboneError, ImageError, MapError
from aesvc_vpr.ros.diagnostics import failure_cause, NodeStats
from aesvc_vpr.ros.health import (assess, backbone_warning, ERROR, FAILING_FRAMES, Observation,
                                  OK, stall_window_s, WARN)

S = 1_000_000_000
T0 = 100 * S                 # activation time


def active(**kwargs) -> Observation:
    return Observation(state='active', topic='/cam/image', active_since_ns=T0, **kwargs)


def test_no_input_warns_naming_the_topic() -> None:
    health = assess(active(), NodeStats(), T0 + 1)
    assert health.level == WARN and health.message == 'no images on /cam/image yet'
    stats = NodeStats()
    stats.on_received(T0 + S)
    stats.on_processed(T0 + S, None, 0.05)
    assert assess(active(), stats, T0 + 2 * S).level == OK
    late = assess(active(), stats, T0 + 20 * S)
    assert late.level == WARN and late.message == 'no images on /cam/image for 19 s'


def test_input_without_results_is_a_stall() -> None:
    stats = NodeStats()
    stats.on_received(T0 + S)
    stats.on_processed(T0 + S, None, 0.05)
    for t in range(2, 12):                 # frames keep coming, nothing is processed
        stats.on_received(T0 + t * S)
    health = assess(active(), stats, T0 + 11 * S)
    assert health.level == WARN
    assert health.message == 'images arrive on /cam/image but none was processed for 10 s'
    # a rate cap of 0.1 Hz makes 10 s without a result normal, 20 s not
    assert stall_window_s(0.1) == 20.0 and stall_window_s(0.0) == stall_window_s(10.0) == 5.0
    assert assess(active(stall_s=20.0), stats, T0 + 11 * S).level == OK


def test_every_frame_failing_is_an_error_and_a_result_ends_it() -> None:
    stats = NodeStats()
    for i in range(FAILING_FRAMES):
        stats.on_received(T0 + i)
        stats.on_failed('backbone', 'out of memory')
        if i == 0:
            first = assess(active(new_failures=1), stats, T0 + i)
            assert first.level == WARN and first.message == '1 frame(s) failed: backbone: ' \
                'out of memory'
    health = assess(active(), stats, T0 + S)
    assert health.level == ERROR
    assert health.message == f'every frame fails ({FAILING_FRAMES} in a row): backbone: ' \
        'out of memory'
    assert stats.snapshot(T0 + S)['failed_backbone'] == FAILING_FRAMES
    stats.on_processed(T0 + S, None, 0.05)
    assert assess(active(), stats, T0 + S).level == OK


def test_incompatible_qos_is_an_error_until_frames_arrive() -> None:
    stats = NodeStats()
    problem = 'incompatible QoS (RELIABILITY) on /cam/image: ...'
    health = assess(active(qos_problem=problem, qos_problem_ns=T0 + S), stats, T0 + 2 * S)
    assert health.level == ERROR
    assert health.message.startswith(f'no frames received: {problem}; no images on')
    stats.on_received(T0 + 3 * S)      # another, compatible publisher
    stats.on_processed(T0 + 3 * S, None, 0.05)
    health = assess(active(qos_problem=problem, qos_problem_ns=T0 + S), stats, T0 + 4 * S)
    assert health.level == WARN and health.message.startswith('some publishers not received')


def test_configure_failure_inactive_state_and_fallback_backbone() -> None:
    stats = NodeStats()
    failed = assess(Observation('unconfigured', configure_error='no map'), stats, 0)
    assert failed.level == ERROR and failed.message == 'configure failed: no map'
    inactive = assess(Observation('inactive'), stats, 0)
    assert inactive.level == WARN and inactive.message == 'inactive: not localising'
    warning = backbone_warning('auto', 'patchgrid')
    assert backbone_warning('patchgrid', 'patchgrid') == backbone_warning('auto', 'vits14') == []
    stats.on_received(T0 + S)
    stats.on_processed(T0 + S, None, 0.05)
    health = assess(active(warnings=warning), stats, T0 + S)
    assert health.level == WARN and "model_name is 'auto' but the weights-free" in health.message


def test_failure_causes_name_the_stage() -> None:
    assert failure_cause(BackboneError('x')) == 'backbone'
    assert failure_cause(MapError('x')) == 'search'
    assert failure_cause(ImageError('x')) == 'decode'
    assert failure_cause(ZeroDivisionError()) == 'bug_ZeroDivisionError'
