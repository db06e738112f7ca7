"""Measuring a projection: cosine statistics over random pairs, and Recall@N at a prefix size.

Shared by the head benchmark and the head tests. Search is the package's exact (flat) PrefixIndex,
so the numbers do not depend on an approximate index.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import recall_at_n, relevance


class Prefixable(Protocol):
    """Anything with the Projector's ``prefix(raw, dim)`` (Projector and baselines)."""

    def prefix(self, raw: np.ndarray, dim: int) -> np.ndarray:
        """(N, D_in) raw -> (N, dim) float32 unit rows."""
        ...


def cosine_stats(embeddings: np.ndarray, pairs: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Mean and variance of the cosine similarity over random pairs of distinct rows.

    Args:
        embeddings: (N, d) rows, N >= 2, any scale.
        pairs: number of (i, j) pairs drawn with replacement, i != j.
        seed: pair sampling seed.

    Returns:
        (mean, variance). For isotropic zero-mean data the mean is ~0 and the variance ~1/d.
    """
    rng = np.random.default_rng(seed)
    count = embeddings.shape[0]
    first = rng.integers(0, count, pairs)
    second = (first + rng.integers(1, count, pairs)) % count            # never equal to first
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    cos = np.einsum('ij,ij->i', unit[first].astype(np.float64), unit[second])
    return float(cos.mean()), float(cos.var())


def prefix_recall(method: Prefixable, dim: int, database_raw: np.ndarray,
                  query_raw: np.ndarray, positives: Sequence[np.ndarray],
                  ns: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Recall@N of cosine search on the size-``dim`` prefix of ``method``.

    Args:
        method: a Projector or baseline.
        dim: prefix size.
        database_raw, query_raw: (N, D) and (M, D) raw embeddings.
        positives: M arrays of positive database rows (``metrics.positives_within``).
        ns: the N of Recall@N.

    Returns:
        {N: recall in [0, 1]}.
    """
    index = PrefixIndex(method.prefix(database_raw, dim), dim)
    _, ranked = index.search(method.prefix(query_raw, dim), max(ns))
    return recall_at_n(relevance(ranked, positives), ns)
