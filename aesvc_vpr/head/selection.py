"""Choosing a head without query labels: retrieval among the map's own rows, by their geotags.

A seeded share of the map rows act as pseudo-queries and search the other rows. Their positives
are the rows within the radius, minus their route neighbours (the rows next to them in capture
order, which are near copies of the same view). The score is the mean of Recall@1/5/10 at each
prefix size. It sees viewpoint change along the route, not the appearance change between a
survey and later queries, so it is used to reject changes that hurt, and to pick among epochs;
docs/head.md ("Selection") says what it cannot see.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aesvc_vpr.errors import HeadError
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import positives_within, recall_at_n, relevance

RECALL_AT = (1, 5, 10)
MAX_QUERIES = 2000      # pseudo-queries scored; keeps a selection pass cheap on large maps


class GeotagScore:
    """Recall of held-out map rows against the other map rows, per prefix size."""

    def __init__(self, utm: np.ndarray, database_rows: np.ndarray, query_rows: np.ndarray,
                 sizes: Sequence[int], radius_m: float = 25.0, neighbours: int = 1,
                 seed: int = 0) -> None:
        """Fix the pseudo-queries and their positives.

        Args:
            utm: (N, 2) positions of all map rows, in capture (route) order.
            database_rows, query_rows: disjoint map rows searched and searching.
            sizes: prefix sizes scored.
            radius_m: positives radius.
            neighbours: rows within this many places in capture order are not candidates.
            seed: which pseudo-queries are kept when there are more than MAX_QUERIES.

        Raises:
            HeadError: no pseudo-query has a positive (the map is too sparse for the radius).
        """
        query_rows = np.asarray(query_rows, np.int64)
        if len(query_rows) > MAX_QUERIES:
            keep = np.random.default_rng(seed).choice(len(query_rows), MAX_QUERIES, replace=False)
            query_rows = np.sort(query_rows[keep])
        self.database_rows = np.asarray(database_rows, np.int64)
        self.sizes = tuple(sizes)
        self.neighbours = neighbours
        found = positives_within(utm[self.database_rows], utm[query_rows], radius_m)
        positives = [p[np.abs(self.database_rows[p] - q) > neighbours]
                     for q, p in zip(query_rows, found)]
        usable = np.array([len(p) > 0 for p in positives], bool)
        if not usable.any():
            raise HeadError(f'no map row has another row within {radius_m:g} m beyond its route '
                            'neighbours, so the head cannot be selected on its geotags')
        self.query_rows = query_rows[usable]
        self.positives = [p for p, u in zip(positives, usable) if u]

    def score(self, embeddings: np.ndarray) -> dict[int, float]:
        """Mean of Recall@1/5/10 in percent, per prefix size.

        Args:
            embeddings: (N, E) full embeddings of all map rows (rows outside the two sets are
                ignored), E >= max(sizes).
        """
        extra = 2 * self.neighbours     # route neighbours that may take top places, dropped
        k = max(RECALL_AT) + extra
        out = {}
        for size in self.sizes:
            index = PrefixIndex(embeddings[self.database_rows], size)
            _, found = index.search(embeddings[self.query_rows], k)
            rows = self.database_rows[found]
            near = np.abs(rows - self.query_rows[:, None]) <= self.neighbours
            # stable: keep the rank order of the remaining candidates
            order = np.argsort(near, axis=1, kind='stable')[:, :max(RECALL_AT)]
            ranked = np.take_along_axis(found, order, axis=1)
            recall = recall_at_n(relevance(ranked, self.positives), RECALL_AT)
            out[size] = 100.0 * float(np.mean(list(recall.values())))
        return out


def mean_score(scores: dict[int, float]) -> float:
    """One number for a whole head: the mean over prefix sizes."""
    return float(np.mean(list(scores.values())))
