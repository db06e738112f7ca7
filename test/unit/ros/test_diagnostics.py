"""Node statistics: trailing-window rates, latency percentiles and counters from given times."""

from __future__ import annotations

import math

from aesvc_vpr.ros.diagnostics import NodeStats, RateMeter

S = 1_000_000_000


def test_rate_meter_counts_the_trailing_window() -> None:
    meter = RateMeter(window_s=2.0)
    for i in range(10):                 # 10 events, 0.1 s apart
        meter.tick(10 * S + i * S // 10)
    assert meter.rate_hz(11 * S) == 5.0             # 10 events / 2 s
    assert meter.rate_hz(12 * S) == 9 / 2.0         # 10.0 s has left the window
    assert meter.rate_hz(20 * S) == 0.0


def test_snapshot_percentiles_and_counters() -> None:
    stats = NodeStats()
    snap = stats.snapshot(0)
    assert math.isnan(snap['latency_p50_ms']) and snap['processed'] == 0
    for i in range(1, 101):              # latencies 1..100 ms, compute 0.5..50 ms
        stats.on_received(i * S // 100)
        stats.on_processed(i * S // 100, i / 1000, i / 2000)
    stats.on_processed(2 * S, None, 0.001)   # an unstamped image: no latency sample
    stats.on_dropped(3)
    stats.on_bad_frame('unknown image encoding')
    snap = stats.snapshot(2 * S)
    assert snap['latency_p50_ms'] == 50.5
    assert math.isclose(snap['latency_p95_ms'], 95.05)
    assert math.isclose(snap['compute_p50_ms'], 25.0, rel_tol=0.05)
    assert (snap['received'], snap['processed'], snap['dropped'], snap['bad_frames']) == \
        (100, 101, 3, 1)
    assert stats.last_error == 'unknown image encoding'
    assert snap['input_rate_hz'] == 100 / 5.0        # all 100 inside the 5 s window
