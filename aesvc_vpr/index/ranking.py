"""Ground truth within a radius and the retrieval scores of the standard VPR protocol (numpy only).

A database image is a positive for a query when their UTM positions are at most ``radius_m``
apart (25 m for Pittsburgh). Recall@N counts a query as correct when any of its top N results is
a positive, over all queries (queries without positives count as misses). mAP@k averages, over
all queries, AP@k = sum_j P(j) rel(j) / min(k, positives), with j running over the top k.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

from aesvc_vpr.errors import SearchError


def positives_within(database_utm: np.ndarray, query_utm: np.ndarray,
                     radius_m: float) -> list[np.ndarray]:
    """Database rows within ``radius_m`` of each query.

    Args:
        database_utm: (N, 2) easting, northing in metres.
        query_utm: (M, 2) in the same zone.
        radius_m: distance at or below which a database image is a positive.

    Returns:
        M sorted int64 arrays of database row indices.
    """
    tree = cKDTree(np.asarray(database_utm, dtype=np.float64))
    found = tree.query_ball_point(np.asarray(query_utm, dtype=np.float64), r=radius_m)
    return [np.sort(np.asarray(rows, dtype=np.int64)) for rows in found]


def relevance(ranked: np.ndarray, positives: Sequence[np.ndarray]) -> np.ndarray:
    """Which retrieved entries are positives.

    Args:
        ranked: (M, K) int database indices, best first; -1 (no result) is never relevant.
        positives: M arrays of positive database indices.

    Returns:
        (M, K) bool.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.ndim != 2 or ranked.shape[0] != len(positives):
        raise SearchError(f'ranked {ranked.shape} does not match {len(positives)} queries')
    largest = max((int(p.max(initial=-1)) for p in positives), default=-1)
    width = max(int(ranked.max(initial=-1)), largest) + 1
    # encode (query, database) pairs as single integers so one isin call covers every query
    pair_ids = np.concatenate([np.empty(0, np.int64)] + [
        q * width + np.asarray(p, np.int64) for q, p in enumerate(positives)])
    rows = np.arange(ranked.shape[0], dtype=np.int64)[:, None]
    return np.isin(rows * width + ranked, pair_ids) & (ranked >= 0)


def recall_at_n(relevant: np.ndarray, ns: Sequence[int] = (1, 5, 10, 20)) -> dict[int, float]:
    """Recall@N: the fraction of all queries with a positive among their top N.

    Args:
        relevant: (M, K) bool from ``relevance``, K >= max(ns).

    Returns:
        {N: recall in [0, 1]}.
    """
    if max(ns) > relevant.shape[1]:
        raise SearchError(f'Recall@{max(ns)} needs >= {max(ns)} results per query, got '
                          f'{relevant.shape[1]}')
    first_hit = np.where(relevant.any(axis=1), relevant.argmax(axis=1), np.iinfo(np.int64).max)
    return {int(n): float(np.mean(first_hit < n)) for n in ns}


def map_at_k(relevant: np.ndarray, num_positives: np.ndarray, k: int = 4) -> float:
    """mAP@k over all queries (a query without positives scores 0).

    Args:
        relevant: (M, K) bool from ``relevance``, K >= k.
        num_positives: (M,) int number of positives of each query.
        k: cut-off.

    Returns:
        mean AP@k in [0, 1].
    """
    if k > relevant.shape[1]:
        raise SearchError(f'mAP@{k} needs >= {k} results per query, got {relevant.shape[1]}')
    top = relevant[:, :k].astype(np.float64)
    precision = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    denominator = np.minimum(k, np.asarray(num_positives, dtype=np.float64))
    ap = np.divide((precision * top).sum(axis=1), denominator,
                   out=np.zeros(len(top)), where=denominator > 0)
    return float(ap.mean()) if len(ap) else 0.0
