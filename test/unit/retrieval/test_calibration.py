"""Match-probability calibration: PAV against scikit-learn, the fit, and the map binding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.calibration import (expected_calibration_error, fit_calibration,
                                             isotonic_fit, isotonic_predict, load_calibration,
                                             map_identity_of, match_features,
                                             pool_adjacent_violators, store_calibration)
from aesvc_vpr.retrieval.mapdb import MapDatabase


def synthetic_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of n frames and labels drawn from a known P(correct | features)."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0.2, 0.9, n)
    margin = rng.exponential(0.03, n)
    spread = rng.uniform(0.0, 2.0, n)
    p = 1 / (1 + np.exp(-(8 * (score - 0.55) + 30 * margin - 1.0 * spread)))
    return np.stack([score, margin, spread], 1), rng.random(n) < p


def test_isotonic_is_monotone_and_equals_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * x))).astype(float)
    knots_x, knots_y = isotonic_fit(x, y)
    assert (np.diff(knots_x) > 0).all() and (np.diff(knots_y) >= 0).all()
    grid = np.linspace(-4, 4, 1000)
    assert (np.diff(isotonic_predict(knots_x, knots_y, grid)) >= -1e-12).all()
    # the fit at the data points equals scikit-learn's (a tested reference implementation)
    isotonic = pytest.importorskip('sklearn.isotonic')
    order = np.argsort(x)
    means, sizes = pool_adjacent_violators(y[order])
    expected = isotonic.IsotonicRegression().fit(x, y).predict(x[order])
    np.testing.assert_allclose(np.repeat(means, sizes), expected, atol=1e-12)
    assert len(means) == len(knots_y) > 5


def test_calibrated_probability_is_calibrated_on_held_out_queries():
    features, correct = synthetic_labels(4000, 1)
    calibration, held = fit_calibration(features, correct, {'map': 'a'})
    assert calibration.held_out['ece'] <= 0.05
    assert calibration.held_out['ece'] == pytest.approx(
        expected_calibration_error(held['probability'], held['correct']))
    # better scores, larger margins and tighter candidates all mean likelier matches
    base = np.array([0.5, 0.02, 1.0])
    p = calibration.probability(np.stack([base, base + [0.2, 0, 0], base + [0, 0.05, 0],
                                          base - [0, 0, 0.8]]))
    assert p[0] < p[1] and p[0] < p[2] and p[0] < p[3]
    assert ((0 <= p) & (p <= 1)).all()


def test_match_features():
    f = match_features(np.array([0.8, 0.6, 0.5]),
                       np.array([[0.0, 0.0], [30.0, 40.0], [0.0, 0.0]]), 25.0)
    np.testing.assert_allclose(f, [0.8, 0.2, np.log1p(np.sqrt(2500 / 3) / 25)])


def small_map(root, seed: int) -> MapDatabase:
    rng = np.random.default_rng(seed)
    return MapDatabase.write(root, rng.normal(size=(30, 16)).astype(np.float32),
                             np.cumsum(rng.uniform(5, 10, (30, 2)), 0), '17T',
                             backbone_name='patchgrid', backbone_fingerprint='x')


def test_stored_calibration_is_refused_for_another_map(tmp_path):
    a, b = small_map(tmp_path / 'a', 0), small_map(tmp_path / 'b', 1)
    features, correct = synthetic_labels(300, 2)
    calibration, _ = fit_calibration(features, correct, map_identity_of(a, 16, 5, 25.0))
    store_calibration(a.root, calibration)
    a = MapDatabase.load(a.root)             # every file hash checked, the calibration's too
    loaded = load_calibration(a, 16, 5, 25.0)
    assert loaded is not None and loaded.to_json() == calibration.to_json()
    assert load_calibration(b, 16, 5, 25.0) is None          # b has none: uncalibrated
    store_calibration(b.root, calibration)                     # a's calibration put into b
    with pytest.raises(MapError, match='embeddings_sha256'):
        load_calibration(MapDatabase.load(b.root), 16, 5, 25.0)
    with pytest.raises(MapError, match='prefix_dim'):
        load_calibration(a, 8, 5, 25.0)
    # a changed calibration file fails the map's own integrity check
    path = a.file('calibration')
    text = path.read_text()
    path.write_text(text.replace('"version": 1', '"version": 2'))      # same size, other bytes
    with pytest.raises(MapError, match='digest|sha256'):
        MapDatabase.load(a.root)
    path.write_text(text + ' ')                                          # one byte longer
    with pytest.raises(MapError, match='truncated or replaced'):
        MapDatabase.load(a.root)


def test_rebuilding_the_map_drops_its_calibration(tmp_path):
    a = small_map(tmp_path / 'a', 0)
    features, correct = synthetic_labels(300, 3)
    store_calibration(a.root, fit_calibration(features, correct,
                                              map_identity_of(a, 16, 5, 25.0))[0])
    rebuilt = small_map(tmp_path / 'a', 5)
    assert 'calibration' not in rebuilt.meta['files']
    assert not list(a.root.glob('calibration-*.json'))
    assert json.loads((a.root / 'map.json').read_text())['files'].keys() == \
        rebuilt.meta['files'].keys()
