"""Rates, latency percentiles and counters for the node's /diagnostics (no ROS imports).

Times are passed in by the caller (monotonic ns), so the statistics are deterministic in tests
and cost nothing when nobody reads them. Thread-safe: the executor thread counts arrivals and
reads snapshots while the worker thread records results.
"""

from __future__ import annotations

from collections import deque
import threading

import numpy as np

from aesvc_vpr.errors import (BackboneError, HeadError, ImageError, LoopError, MapError,
                              SearchError)

# the stage a failed frame is counted under; anything else is a bug, counted by exception type
CAUSES = ((ImageError, 'decode'), (BackboneError, 'backbone'), (HeadError, 'head'),
          (SearchError, 'search'), (MapError, 'search'), (LoopError, 'detector'))
WINDOW_S = 5.0          # rates are averaged over this trailing window
LATENCY_SAMPLES = 512   # percentiles over the most recent samples


def failure_cause(err: BaseException) -> str:
    """Name the stage a frame failed in ('backbone', 'search', ...), or 'bug_<Type>'."""
    for kind, cause in CAUSES:
        if isinstance(err, kind):
            return cause
    return f'bug_{type(err).__name__}'


class RateMeter:
    """Events per second over a trailing window."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        """Average over the last ``window_s`` seconds."""
        self._window_ns = int(window_s * 1e9)
        self._times: deque[int] = deque()

    def tick(self, now_ns: int) -> None:
        """Record one event at monotonic time ``now_ns``."""
        self._times.append(now_ns)
        self._trim(now_ns)

    def rate_hz(self, now_ns: int) -> float:
        """Return events per second in the window ending at ``now_ns``."""
        self._trim(now_ns)
        return len(self._times) * 1e9 / self._window_ns

    def _trim(self, now_ns: int) -> None:
        while self._times and self._times[0] <= now_ns - self._window_ns:
            self._times.popleft()


class NodeStats:
    """Counters and statistics of one node run; ``snapshot`` gives the diagnostics values."""

    def __init__(self) -> None:
        """Start with zero counts and empty windows."""
        self._lock = threading.Lock()
        self._received = RateMeter()
        self._processed = RateMeter()
        self._latency_s: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._compute_s: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.bad_frames = 0
        self.last_error = ''
        self.failures: dict[str, int] = {}     # frames that failed after decode, by cause
        self.consecutive_failures = 0          # frames failed (any cause) since the last result
        self.last_received_ns = 0              # monotonic ns; 0: never
        self.last_processed_ns = 0

    def on_received(self, now_ns: int) -> None:
        """Count a frame that arrived from the subscription at monotonic ``now_ns``."""
        with self._lock:
            self.received += 1
            self.last_received_ns = now_ns
            self._received.tick(now_ns)

    def on_dropped(self, count: int = 1) -> None:
        """Count frames replaced in the slot before the worker took them (newest wins)."""
        with self._lock:
            self.dropped += count

    def on_bad_frame(self, reason: str) -> None:
        """Count a frame that could not be decoded, keeping the reason for diagnostics."""
        with self._lock:
            self.bad_frames += 1
            self.consecutive_failures += 1
            self.last_error = reason

    def on_failed(self, cause: str, reason: str) -> None:
        """Count a decoded frame the core failed on; ``cause`` names the stage (backbone...)."""
        with self._lock:
            self.failures[cause] = self.failures.get(cause, 0) + 1
            self.consecutive_failures += 1
            self.last_error = f'{cause}: {reason}'

    def on_processed(self, now_ns: int, latency_s: float | None, compute_s: float) -> None:
        """Record one published result.

        Args:
            now_ns: monotonic time of publishing.
            latency_s: image header.stamp -> publish, in seconds; None for unstamped images.
            compute_s: decode + embed + search of this frame, in seconds.
        """
        with self._lock:
            self.processed += 1
            self.consecutive_failures = 0
            self.last_processed_ns = now_ns
            self._processed.tick(now_ns)
            if latency_s is not None:
                self._latency_s.append(latency_s)
            self._compute_s.append(compute_s)

    def snapshot(self, now_ns: int) -> dict[str, float]:
        """Return rates in Hz, latencies in ms (NaN before the first frame) and counts."""
        with self._lock:
            latency = _percentiles_ms(self._latency_s)
            compute = _percentiles_ms(self._compute_s)
            return {
                'input_rate_hz': self._received.rate_hz(now_ns),
                'processed_rate_hz': self._processed.rate_hz(now_ns),
                'latency_p50_ms': latency[0], 'latency_p95_ms': latency[1],
                'compute_p50_ms': compute[0], 'compute_p95_ms': compute[1],
                'received': self.received, 'processed': self.processed,
                'dropped': self.dropped, 'bad_frames': self.bad_frames,
                'failed_frames': sum(self.failures.values()),
                **{f'failed_{cause}': count for cause, count in sorted(self.failures.items())},
            }


def _percentiles_ms(samples_s: deque[float]) -> tuple[float, float]:
    if not samples_s:
        return float('nan'), float('nan')
    p50, p95 = np.percentile(np.fromiter(samples_s, float), [50, 95])
    return float(p50) * 1e3, float(p95) * 1e3
