"""Projection measurements: cosine statistics and a worked Recall@N example."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.head.baselines import Truncation
from aesvc_vpr.head.quality import cosine_stats, prefix_recall


def test_cosine_stats_of_isotropic_and_offset_data():
    rng = np.random.default_rng(1)
    mean, var = cosine_stats(rng.standard_normal((4000, 64)), pairs=40000)
    assert abs(mean) < 0.005 and var == pytest.approx(1 / 64, rel=0.05)
    mean, _ = cosine_stats(rng.standard_normal((4000, 64)) + 2.0)
    assert mean == pytest.approx(0.8, abs=0.02)               # 4*64 / (4*64 + 64)


def test_prefix_recall_worked_example():
    database = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    queries = np.array([[1, 0.1, 5], [0.1, 1, -5]], np.float32)
    positives = [np.array([0]), np.array([3])]
    # on 2-d prefixes query 0 is nearest to row 0; query 1 ranks row 1 before row 3
    recall = prefix_recall(Truncation(3), 2, database, queries, positives, (1, 2))
    assert recall == {1: 0.5, 2: 1.0}
    # on all 3 dimensions query 0 is nearest to row 2 (a miss) and row 0 is second
    assert prefix_recall(Truncation(3), 3, database, queries, positives, (1,)) == {1: 0.0}
