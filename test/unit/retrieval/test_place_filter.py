"""The sequence filter on constructed sequences: a route of places 10 m apart, noisy candidates."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.config import FilterConfig
from aesvc_vpr.errors import ConfigError, MapError
from aesvc_vpr.retrieval.place_filter import PlaceFilter

SPACING_M = 10.0
PERIOD_NS = 1_000_000_000
CFG = FilterConfig(mode='hmm', speed_mps=SPACING_M, temperature=0.05, floor=0.05)


def route(count: int) -> np.ndarray:
    """(count, 2) places along a straight line, SPACING_M apart."""
    return np.stack([np.arange(count) * SPACING_M, np.zeros(count)], axis=1)


def noisy_candidates(true_row: int, count: int, rng: np.random.Generator, k: int = 10,
                     hit_rate: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a weak single-frame matcher: the true place is top-1 only ``hit_rate`` often."""
    rows = rng.choice(count, k, replace=False)
    scores = np.sort(rng.uniform(0.3, 0.5, k))[::-1]
    if rng.random() < hit_rate:
        rows = np.concatenate([[true_row], rows[rows != true_row]])[:k]
    elif rng.random() < 0.5 and true_row not in rows:
        rows[rng.integers(1, k)] = true_row      # somewhere in the list, not first
    return rows, scores


def run(filt: PlaceFilter, truth: list[int], rng: np.random.Generator,
        odometer: list[float] | None = None) -> list[int]:
    """Feed one frame per true row; return the filter's best row per frame."""
    best = []
    for i, row in enumerate(truth):
        rows, scores = noisy_candidates(row, filt.count, rng)
        out = filt.step(i * PERIOD_NS, rows, scores,
                        None if odometer is None else odometer[i])
        best.append(int(out.rows[0]) if len(out.rows) else -1)
    return best


def test_follows_a_moving_robot_better_than_single_frames():
    rng = np.random.default_rng(0)
    filt = PlaceFilter(route(300), CFG)
    truth = list(range(20, 220))
    best = run(filt, truth, rng)
    after_warmup = np.array(best[20:]) == np.array(truth[20:])
    assert after_warmup.mean() >= 0.9          # single frames here are right 40 % of the time


def test_belief_sums_to_one_and_entropy_is_bounded():
    rng = np.random.default_rng(1)
    filt = PlaceFilter(route(200), CFG)
    summary = filt.summary()
    assert summary.entropy_nats == pytest.approx(np.log(200))
    assert summary.peak == pytest.approx(1 / 200)
    for i, row in enumerate(range(10, 60)):
        rows, scores = noisy_candidates(row, 200, rng)
        summary = filt.step(i * PERIOD_NS, rows, scores)
        dense = filt.belief()
        assert dense.sum() == pytest.approx(1.0, abs=1e-9)
        assert (dense >= 0).all()
        assert summary.peak == pytest.approx(dense.max())
        expected = -np.sum(dense * np.log(dense))
        assert summary.entropy_nats == pytest.approx(expected, rel=1e-9)
    assert summary.entropy_nats < 0.5 * np.log(200)     # it became certain


def test_recovers_after_a_jump_within_15_frames():
    rng = np.random.default_rng(2)
    filt = PlaceFilter(route(400), CFG)
    truth = list(range(10, 60)) + list(range(300, 350))   # kidnapped after frame 50
    best = run(filt, truth, rng)
    assert best[49] == truth[49]
    correct = np.array(best[50:]) == np.array(truth[50:])
    first_good = next(i for i in range(len(correct)) if correct[i:i + 10].all())
    assert first_good <= 15


def test_odometry_drives_the_motion_and_older_frames_are_ignored():
    filt = PlaceFilter(route(100), FilterConfig(mode='hmm', speed_mps=0.0))
    filt.step(0, np.array([10]), np.array([0.9]))
    filt.step(PERIOD_NS, np.array([10]), np.array([0.9]), odometer_m=0.0)
    assert filt.summary().rows[0] == 10
    # 30 m of odometry and no candidates: the belief moves 3 places on
    filt.step(2 * PERIOD_NS, np.array([], np.int64), np.array([]), odometer_m=30.0)
    moved = filt.belief()
    assert abs(int(np.argmax(moved)) - 10) == 3
    # a frame stamped before the last, with odometry far ahead: no motion is applied
    before = filt.belief()
    filt.step(PERIOD_NS // 2, np.array([], np.int64), np.array([]), odometer_m=500.0)
    assert filt.counters.stamp_backwards == 1
    after = filt.belief()
    mixed = (1 - filt.cfg.mixing) * before + filt.cfg.mixing / filt.count
    np.testing.assert_allclose(after, mixed, atol=1e-9)
    # and the odometer it carried did not become the reference either
    filt.step(3 * PERIOD_NS, np.array([], np.int64), np.array([]), odometer_m=30.0)
    assert int(np.argmax(filt.belief())) == int(np.argmax(after))


def test_speed_prior_moves_the_belief_without_odometry():
    filt = PlaceFilter(route(100), FilterConfig(mode='hmm', speed_mps=20.0, motion_sigma_m=2.0,
                                                motion_noise=0.0))
    filt.step(0, np.array([40]), np.array([0.9]))
    filt.step(PERIOD_NS, np.array([], np.int64), np.array([]))
    best = int(np.argmax(filt.belief()))
    assert best in (38, 42)                   # 20 m either way: the map has no direction


def test_a_pose_prior_concentrates_the_belief():
    filt = PlaceFilter(route(100), CFG)
    places = filt.set_prior(np.array([502.0, 3.0]), sigma_m=10.0)
    assert places == 6                        # 3 sigma = 30 m: x 480..530, rows 48..53
    assert int(filt.summary().rows[0]) == 50
    assert filt.belief()[filt.rows_within([502.0, 3.0], 30.0)].sum() > 0.99
    assert filt.set_prior(np.array([1e6, 0.0]), 10.0) == 0    # off the map: nothing changes


def test_support_stays_bounded_on_a_large_map():
    rng = np.random.default_rng(3)
    cfg = FilterConfig(mode='hmm', speed_mps=SPACING_M, max_support=50)
    filt = PlaceFilter(route(5000), cfg)
    for i in range(30):
        rows, scores = noisy_candidates(100 + i, 5000, rng, k=40)
        assert filt.step(i * PERIOD_NS, rows, scores).support <= 50


def test_bad_input_is_refused():
    with pytest.raises(MapError):
        PlaceFilter(np.zeros((0, 2)), CFG)
    with pytest.raises(MapError):
        PlaceFilter(np.array([[0.0, np.nan]]), CFG)
    with pytest.raises(ConfigError):
        FilterConfig(mode='particles')
    with pytest.raises(ConfigError):
        FilterConfig(mixing=0.0)


def test_a_position_fix_reweights_instead_of_replacing():
    filt = PlaceFilter(route(100), CFG)
    filt.step(0, np.array([20, 60]), np.array([0.8, 0.8]))      # two equal hypotheses
    assert filt.observe_position(np.array([600.0, 0.0]), sigma_m=15.0) == 9
    assert int(filt.summary().rows[0]) == 60
    assert filt.belief()[20] > 1 / 100 * CFG.floor       # the other one is weakened, not gone
    assert filt.belief().sum() == pytest.approx(1.0)
    assert filt.observe_position(np.array([-1e5, 0.0]), 15.0) == 0


def test_a_move_longer_than_the_map_makes_the_belief_uniform_without_a_dense_graph():
    # 100 places over 990 m: after 50 s at 1 m/s the filter still predicts, after an hour
    # (a paused bag, a first frame after a probe) every place is possible
    cfg = FilterConfig(mode='hmm', speed_mps=1.0)
    filt = PlaceFilter(route(100), cfg)
    filt.step(0, np.array([40]), np.array([0.9]))
    filt.step(50 * PERIOD_NS, np.array([40]), np.array([0.9]))
    assert filt.counters.beyond_map == 0 and filt.summary().peak > 0.3
    edges = len(filt._graph.indices)
    filt.step(3600 * PERIOD_NS, np.array([], np.int64), np.array([]))
    assert filt.counters.beyond_map == 1
    np.testing.assert_allclose(filt.belief(), 1 / 100, rtol=1e-12)
    assert len(filt._graph.indices) == edges          # no graph over every pair was built
    # and the next frames start from there exactly as a fresh filter does from its first frame
    fresh = PlaceFilter(route(100), cfg)
    fresh.step(3600 * PERIOD_NS, np.array([], np.int64), np.array([]))
    for t in (3601, 3602, 3603):
        rows, scores = np.array([50 + t - 3601, 7]), np.array([0.9, 0.8])
        a, b = filt.step(t * PERIOD_NS, rows, scores), fresh.step(t * PERIOD_NS, rows, scores)
        np.testing.assert_allclose(filt.belief(), fresh.belief(), atol=1e-15)
        assert a.rows.tolist() == b.rows.tolist()
