"""Odometry as the loop-closure detector sees it: the latest valid pose and the travelled path.

Odometry is optional and often imperfect (dropped, reordered, NaN after a reset), so bad samples
are counted and ignored here rather than raised: a loop-closure detector must keep running.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import math

log = logging.getLogger(__name__)


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
    """Keeps the newest valid odometry sample and integrates the travelled path.

    ``counters`` holds ``odom_accepted``, ``odom_nan`` (non-finite values) and
    ``odom_out_of_order`` (a stamp not newer than the last accepted one).
    """

    def __init__(self) -> None:
        self.latest: OdomSample | None = None
        self.counters = {'odom_accepted': 0, 'odom_nan': 0, 'odom_out_of_order': 0}

    @property
    def path_m(self) -> float:
        """Travelled path so far in metres (0 before the first sample)."""
        return self.latest.path_m if self.latest else 0.0

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
        self.latest = OdomSample(int(stamp_ns), *values, path_m=self.path_m + step_m)
        self.counters['odom_accepted'] += 1
        return True

    def at(self, stamp_ns: int, max_age_s: float) -> OdomSample | None:
        """Return the latest sample if it lies within ``max_age_s`` of ``stamp_ns``, else None."""
        if self.latest is None or abs(stamp_ns - self.latest.stamp_ns) > max_age_s * 1e9:
            return None
        return self.latest
