"""Odometry as the loop-closure detector sees it: recent valid poses and the travelled path.

Odometry is optional and often imperfect (dropped, reordered, NaN after a reset), so bad samples
are counted and ignored here rather than raised: a loop-closure detector must keep running.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
import logging
import math

log = logging.getLogger(__name__)

HISTORY_S = 10.0          # odometry kept for interpolation at frame stamps
CLOCK_RESET_S = 1.0       # a stamp this far behind the newest one means the clock was reset


@dataclass(frozen=True)
class OdomSample:
    """One accepted odometry pose, in the odometry frame."""

    stamp_ns: int
    x_m: float
    y_m: float
    yaw_rad: float
    path_m: float      # length of the travelled path (sum of xy steps) up to this sample


def log_sparsely(logger: logging.Logger, count: int, message: str, *args: object) -> None:
    """Warn on the 1st, 10th, 100th, ... occurrence, so a stuck source cannot flood the log."""
    if count > 0 and 10 ** int(math.log10(count)) == count:
        logger.warning(message + ' (%d so far)', *args, count)


class OdometryTrack:
    """Keeps the recent valid odometry samples and integrates the travelled path.

    A pose at a frame's stamp is interpolated between the two samples around it. When the
    frames show that the clock was reset (see ``is_clock_reset``), the detector calls ``reset``
    and the track starts again. ``counters`` holds ``odom_accepted``, ``odom_nan`` (non-finite
    values) and ``odom_out_of_order`` (a stamp not newer than the last accepted one).
    """

    def __init__(self) -> None:
        self._samples: deque[OdomSample] = deque()
        self.counters = {'odom_accepted': 0, 'odom_nan': 0, 'odom_out_of_order': 0}

    @property
    def latest(self) -> OdomSample | None:
        """The newest accepted sample, None before the first (or right after a reset)."""
        return self._samples[-1] if self._samples else None

    @property
    def path_m(self) -> float:
        """Travelled path so far in metres (0 before the first sample)."""
        return self.latest.path_m if self.latest else 0.0

    def reset(self) -> None:
        """Forget every sample: a new session starts (the path starts again from 0)."""
        self._samples.clear()

    def add(self, stamp_ns: int, x_m: float, y_m: float, yaw_rad: float) -> bool:
        """Take one odometry sample; returns False (and counts why) when it is ignored.

        Args:
            stamp_ns: sample time, int nanoseconds.
            x_m: position in the odometry frame, metres.
            y_m: position in the odometry frame, metres.
            yaw_rad: heading in the odometry frame, radians.
        """
        values = (float(x_m), float(y_m), float(yaw_rad))
        if not all(math.isfinite(v) for v in values):
            self.counters['odom_nan'] += 1
            log_sparsely(log, self.counters['odom_nan'], 'non-finite odometry at %d ns ignored',
                         stamp_ns)
            return False
        last = self.latest
        if last is not None and stamp_ns <= last.stamp_ns:
            self.counters['odom_out_of_order'] += 1
            log_sparsely(log, self.counters['odom_out_of_order'],
                         'odometry at %d ns is not newer than %d ns; ignored', stamp_ns,
                         last.stamp_ns)
            return False
        step_m = math.hypot(values[0] - last.x_m, values[1] - last.y_m) if last else 0.0
        self._samples.append(OdomSample(int(stamp_ns), *values, path_m=self.path_m + step_m))
        while self._samples[-1].stamp_ns - self._samples[0].stamp_ns > HISTORY_S * 1e9:
            self._samples.popleft()
        self.counters['odom_accepted'] += 1
        return True

    def at(self, stamp_ns: int, max_age_s: float) -> OdomSample | None:
        """Return the pose at ``stamp_ns``: interpolated, or the nearest sample, or None.

        Between two samples that are each within ``max_age_s`` of the stamp, position, path
        and yaw (shortest way round) are interpolated linearly. Otherwise the nearest sample is
        taken when it lies within ``max_age_s``; with none that close, None.
        """
        samples = self._samples
        if not samples:
            return None
        limit_ns = max_age_s * 1e9
        stamps = [s.stamp_ns for s in samples]
        after = bisect.bisect_left(stamps, stamp_ns)
        if after < len(samples) and stamps[after] == stamp_ns:
            return samples[after]
        before = after - 1
        if 0 <= before and after < len(samples) and stamp_ns - stamps[before] <= limit_ns \
                and stamps[after] - stamp_ns <= limit_ns:
            return _between(samples[before], samples[after], stamp_ns)
        near = [samples[i] for i in (before, after) if 0 <= i < len(samples)]
        best = min(near, key=lambda s: abs(s.stamp_ns - stamp_ns))
        return best if abs(best.stamp_ns - stamp_ns) <= limit_ns else None


def is_clock_reset(newest_ns: int, stamp_ns: int) -> bool:
    """Whether ``stamp_ns`` lies so far before ``newest_ns`` that the clock was reset.

    A looped bag (``ros2 bag play --loop``), a simulator reset or sim time restarting all jump
    back by more than ``CLOCK_RESET_S``; reordered messages arrive only milliseconds late.
    """
    return newest_ns - stamp_ns > CLOCK_RESET_S * 1e9


def _between(a: OdomSample, b: OdomSample, stamp_ns: int) -> OdomSample:
    """Linear interpolation of two samples at ``stamp_ns`` (a.stamp_ns < stamp_ns < b.stamp_ns)."""
    frac = (stamp_ns - a.stamp_ns) / (b.stamp_ns - a.stamp_ns)
    turn = math.atan2(math.sin(b.yaw_rad - a.yaw_rad), math.cos(b.yaw_rad - a.yaw_rad))
    yaw = a.yaw_rad + frac * turn
    return OdomSample(int(stamp_ns), a.x_m + frac * (b.x_m - a.x_m),
                      a.y_m + frac * (b.y_m - a.y_m), math.atan2(math.sin(yaw), math.cos(yaw)),
                      a.path_m + frac * (b.path_m - a.path_m))
