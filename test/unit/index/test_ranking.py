"""Recall@N, mAP@k and positives against a hand-worked example and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.ranking import map_at_k, positives_within, recall_at_n, relevance


def test_hand_worked_example():
    # database on a line at x = 0, 10, 20, 30, 100; radius 12 m
    database = np.array([[0, 0], [10, 0], [20, 0], [30, 0], [100, 0]], float)
    queries = np.array([[0, 0], [25, 0], [100, 0], [200, 0], [5, 0]], float)
    positives = positives_within(database, queries, 12.0)
    assert [p.tolist() for p in positives] == [[0, 1], [2, 3], [4], [], [0, 1]]
    ranked = np.array([[2, 1, 0],      # first positive at rank 2
                       [3, 0, 2],      # rank 1
                       [0, 1, 2],      # no positive retrieved
                       [4, 3, 2],      # query without positives
                       [4, 3, 0]])     # rank 3
    relevant = relevance(ranked, positives)
    assert recall_at_n(relevant, (1, 2, 3)) == pytest.approx({1: 0.2, 2: 0.4, 3: 0.6})
    # AP@3 = (1/2 + 2/3)/2, (1 + 2/3)/2, 0, 0, (1/3)/2  -> mean 19/60
    counts = np.array([len(p) for p in positives])
    assert map_at_k(relevant, counts, 3) == pytest.approx(19 / 60)


def test_no_result_is_never_relevant():
    relevant = relevance(np.array([[-1, 0]]), [np.array([0])])
    assert relevant.tolist() == [[False, True]]


def test_too_few_results_is_an_error():
    relevant = np.zeros((2, 3), bool)
    with pytest.raises(SearchError, match='Recall@5'):
        recall_at_n(relevant, (1, 5))
    with pytest.raises(SearchError, match='mAP@4'):
        map_at_k(relevant, np.ones(2), 4)


def _reference(database, queries, radius, ranked, ns, k):
    """Loops straight from the definitions."""
    positives = [[j for j in range(len(database))
                  if math.dist(database[j], q) <= radius] for q in queries]
    recall = {n: sum(any(r in pos for r in row[:n]) for row, pos in zip(ranked, positives))
              / len(queries) for n in ns}
    aps = []
    for row, pos in zip(ranked, positives):
        hits, total = 0, 0.0
        for j, r in enumerate(row[:k], 1):
            if r in pos:
                hits += 1
                total += hits / j
        aps.append(total / min(k, len(pos)) if pos else 0.0)
    return positives, recall, sum(aps) / len(aps)


def test_matches_brute_force_on_random_cases():
    rng = np.random.default_rng(1234)
    for case in range(300):
        n, m = rng.integers(1, 60), rng.integers(1, 20)
        database = rng.uniform(0, 100, (n, 2)).round(rng.integers(0, 3))  # ties on the radius
        queries = rng.uniform(0, 100, (m, 2)).round(1)
        radius = float(rng.choice([5.0, 10.0, 25.0, 40.0]))
        width = int(rng.integers(4, 25))
        ranked = np.stack([rng.permutation(np.arange(-1, max(n, width)))[:width]
                           for _ in range(m)])
        ranked[ranked >= n] = -1
        ns = tuple(sorted({1, int(rng.integers(1, width + 1)), width}))
        k = int(rng.integers(1, width + 1))
        positives, recall, mean_ap = _reference(database, queries, radius, ranked, ns, k)
        got = positives_within(database, queries, radius)
        assert [p.tolist() for p in got] == positives, case
        relevant = relevance(ranked, got)
        assert recall_at_n(relevant, ns) == pytest.approx(recall), case
        assert map_at_k(relevant, np.array([len(p) for p in got]), k) == \
            pytest.approx(mean_ap), case
