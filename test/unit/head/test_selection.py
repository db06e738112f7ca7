"""The label-free selection score and the partial-whitening baseline it tunes."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.baselines import fit_partial_whitening, PCA
from aesvc_vpr.head.selection import GeotagScore, mean_score


def route(count: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows 10 m apart on a line; each embedding mixes its place with its neighbours'."""
    rng = np.random.default_rng(seed)
    utm = np.stack([np.arange(count) * 10.0, np.zeros(count)], axis=1)
    places = rng.standard_normal((count + 4, 32))
    smooth = places[:-4] + places[1:-3] + places[2:-2] + places[3:-1] + places[4:]
    return smooth + 0.5 * rng.standard_normal(smooth.shape), utm


def brute_force(embeddings, utm, database, queries, size, neighbours=1, radius=25.0):
    unit = embeddings[:, :size] / np.linalg.norm(embeddings[:, :size], axis=1, keepdims=True)
    hits = {1: [], 5: [], 10: []}
    for q in queries:
        candidates = [r for r in database if abs(r - q) > neighbours]
        positives = {r for r in candidates if np.hypot(*(utm[r] - utm[q])) <= radius}
        if not positives:
            continue
        ranked = sorted(candidates, key=lambda r: -float(unit[q] @ unit[r]))
        for n in hits:
            hits[n].append(bool(positives & set(ranked[:n])))
    return 100 * float(np.mean([np.mean(v) for v in hits.values()]))


def test_score_matches_brute_force_and_skips_route_neighbours():
    embeddings, utm = route()
    queries, database = np.arange(0, 120, 5), np.setdiff1d(np.arange(120), np.arange(0, 120, 5))
    score = GeotagScore(utm, database, queries, (8, 32))
    got = score.score(embeddings)
    for size in (8, 32):
        assert got[size] == pytest.approx(brute_force(embeddings, utm, database, queries, size))
    assert mean_score(got) == pytest.approx((got[8] + got[32]) / 2)
    # a copy of each query as its route neighbour would be a perfect match: it is not counted
    copies = embeddings.copy()
    copies[queries[queries < 119] + 1] = embeddings[queries[queries < 119]]
    assert score.score(copies)[32] < 100.0


def test_a_map_without_nearby_rows_cannot_be_scored():
    embeddings, utm = route(20)
    with pytest.raises(HeadError, match='within 5 m'):
        GeotagScore(utm * 10, np.arange(0, 20, 2), np.arange(1, 20, 2), (8,), radius_m=5.0)


def test_partial_whitening_tunes_a_power_per_size_on_the_map_alone():
    embeddings, utm = route(200, seed=1)
    embeddings = embeddings @ np.diag(np.linspace(8.0, 0.2, 32))   # anisotropic, like a backbone
    tuned = fit_partial_whitening(embeddings, utm, (8, 16), powers=(0.0, 0.5, 1.0))
    assert set(tuned.powers) == {8, 16} and set(tuned.powers.values()) <= {0.0, 0.5, 1.0}
    for size, power in tuned.powers.items():
        reference = PCA.fit(embeddings, n_components=16, whiten_power=power)
        assert np.allclose(np.abs(tuned.prefix(embeddings, size)),
                           np.abs(reference.prefix(embeddings, size)), atol=1e-4)
