"""The level and message of the node's /diagnostics status, decided from its counters (no ROS).

The rule is that /diagnostics never says OK while the node is not localising: a user whose node
"publishes nothing" looks here first. Each problem found adds a (level, text) pair; the status
takes the highest level and lists the texts worst first. Times are monotonic ns passed in, so
every rule is tested without waiting (test/unit/ros/test_health.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aesvc_vpr.ros.diagnostics import NodeStats

PATCHGRID = 'patchgrid'        # the backbone name of aesvc_vpr.backbone.patchgrid

OK, WARN, ERROR = 0, 1, 2      # diagnostic_msgs/DiagnosticStatus levels
STALL_S = 5.0                  # input arriving but no result for this long: WARN
FAILING_FRAMES = 3             # this many failed frames in a row and no result: ERROR
RATE_PERIODS = 2.0             # a rate cap of r Hz stretches the stall window to this / r


def stall_window_s(max_rate_hz: float) -> float:
    """Seconds without a result, while frames arrive, that count as a stall."""
    return max(STALL_S, RATE_PERIODS / max_rate_hz) if max_rate_hz > 0 else STALL_S


def backbone_warning(configured: str, running: object) -> list[str]:
    """Return a WARN text when a DINOv2 configuration runs the weights-free patchgrid baseline."""
    if running == PATCHGRID and configured != PATCHGRID:
        return [f'backbone.model_name is {configured!r} but the weights-free {PATCHGRID} '
                'baseline runs (no DINOv2 weights found; docs/backbone.md)']
    return []


@dataclass(frozen=True)
class Health:
    """One diagnostics verdict."""

    level: int
    message: str


@dataclass
class Observation:
    """What the node knows when it publishes diagnostics.

    Attributes:
        state: lifecycle state label.
        topic: the resolved input topic, for messages.
        active_since_ns: monotonic ns of the last activation (0: not active).
        stall_s: the stall window (``stall_window_s``).
        configure_error: the last configure failure, '' if none.
        qos_problem: incompatible-QoS description, with ``qos_problem_ns`` its monotonic ns.
        new_failures: frames failed (any cause) since the previous diagnostics message.
        warnings: standing conditions that degrade results (e.g. a fallback backbone).
    """

    state: str
    topic: str = ''
    active_since_ns: int = 0
    stall_s: float = STALL_S
    configure_error: str = ''
    qos_problem: str = ''
    qos_problem_ns: int = 0
    new_failures: int = 0
    warnings: list[str] = field(default_factory=list)


def assess(obs: Observation, stats: NodeStats, now_ns: int) -> Health:
    """Return the worst level among the node's problems and all of them, worst first."""
    problems: list[tuple[int, str]] = []
    if obs.configure_error:
        problems.append((ERROR, f'configure failed: {obs.configure_error}'))
    elif obs.state != 'active':
        problems.append((WARN, f'{obs.state}: not localising'))
    else:
        problems.extend(_input_problems(obs, stats, now_ns))
    problems.extend((WARN, text) for text in obs.warnings)
    if not problems:
        return Health(OK, 'localising')
    problems.sort(key=lambda p: -p[0])
    return Health(problems[0][0], '; '.join(text for _, text in problems))


def _input_problems(obs: Observation, stats: NodeStats, now_ns: int) -> list[tuple[int, str]]:
    stall_ns = int(obs.stall_s * 1e9)
    received_ns = stats.last_received_ns if stats.last_received_ns >= obs.active_since_ns else 0
    out: list[tuple[int, str]] = []
    if stats.consecutive_failures >= FAILING_FRAMES:
        out.append((ERROR, f'every frame fails ({stats.consecutive_failures} in a row): '
                           f'{stats.last_error}'))
    elif stats.consecutive_failures or obs.new_failures:
        out.append((WARN, f'{max(stats.consecutive_failures, obs.new_failures)} frame(s) failed: '
                          f'{stats.last_error}'))
    if obs.qos_problem and received_ns <= obs.qos_problem_ns:
        out.append((ERROR, f'no frames received: {obs.qos_problem}'))
    elif obs.qos_problem:
        out.append((WARN, f'some publishers not received: {obs.qos_problem}'))
    if not received_ns:
        out.append((WARN, f'no images on {obs.topic} yet'))
    elif now_ns - received_ns > stall_ns:
        out.append((WARN, f'no images on {obs.topic} for {(now_ns - received_ns) * 1e-9:.0f} s'))
    else:
        since_ns = max(stats.last_processed_ns, obs.active_since_ns)
        if now_ns - since_ns > stall_ns and not stats.consecutive_failures:
            out.append((WARN, f'images arrive on {obs.topic} but none was processed for '
                              f'{(now_ns - since_ns) * 1e-9:.0f} s'))
    return out
