"""Funnel search: candidates from a cheap index, re-ranked exactly from the stored embeddings.

An (SS)2D embedding puts most of a place's identity in its leading dimensions, so a short
prefix (say 32) finds a shortlist that holds the exact top matches of a long prefix (say 256);
scoring only that shortlist at the long prefix costs ``shortlist_k`` dot products instead of N.
The same re-rank turns a compressed approximate index (IVF-PQ) into exact cosine scores. The
store may be memory-mapped: only the shortlisted rows are read, and the mapping's pages are
mapped into the process in a background thread at construction (``common.prefault``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from aesvc_vpr.common.prefault import populate_in_background
from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.rerank import exact_scores, sorted_rows


class CandidateIndex(Protocol):
    """What the funnel needs from its first stage (``PrefixIndex`` and ``SavedIndex`` fit)."""

    prefix_dim: int
    index_type: str
    count: int
    nbytes: int

    def search(self, queries_full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (M, k) scores and (M, k) int64 rows, best first (-1: no result)."""


class FunnelIndex:
    """Shortlist with ``candidates``, then rank the shortlist by exact cosine at ``prefix_dim``.

    Attributes:
        prefix_dim: the prefix of the exact re-rank (and of the reported scores).
        prefault_thread: the thread mapping a memory-mapped store's pages (None otherwise).
        shortlist_k: candidates taken per query from the first stage.
        index_type: 'funnel(<first stage type>@<its prefix>)'.
        count: number of entries.
        nbytes: resident memory of the first stage (the store is not counted: it may be mapped).
    """

    def __init__(self, candidates: CandidateIndex, store: np.ndarray, prefix_dim: int,
                 shortlist_k: int) -> None:
        """Combine a first stage with the full-size embeddings it indexes.

        Args:
            candidates: the first stage, over the same rows as ``store``.
            store: (N, E) full-size embeddings (float16 or float32, may be a np.memmap).
            prefix_dim: 1 <= prefix_dim <= E.
            shortlist_k: >= 1 candidates re-ranked per query.

        Raises:
            SearchError: rows or sizes that do not fit together.
        """
        if store.ndim != 2 or len(store) != candidates.count:
            raise SearchError(f'the store has shape {store.shape} but the first stage indexes '
                              f'{candidates.count} rows')
        if not 1 <= prefix_dim <= store.shape[1]:
            raise SearchError(f'prefix size {prefix_dim} is outside 1..{store.shape[1]} '
                              "(the map's embedding size)")
        if shortlist_k < 1:
            raise SearchError(f'shortlist_k must be >= 1, got {shortlist_k}')
        self.candidates = candidates
        self.store = store
        self.prefix_dim = prefix_dim
        self.shortlist_k = shortlist_k
        self.count = candidates.count
        self.nbytes = candidates.nbytes
        self.index_type = f'funnel({candidates.index_type}@{candidates.prefix_dim})'
        self.recall_vs_exact = getattr(candidates, 'recall_vs_exact', 1.0)
        # a mapped store's pages are mapped in the background: a first touch costs a fault
        self.prefault_thread = populate_in_background(store)

    def search(self, queries_full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k entries by exact cosine of the ``prefix_dim`` prefixes, among the shortlist.

        Args:
            queries_full: (M, E') embeddings with E' >= prefix_dim.
            k: results per query (at most the shortlist's size).

        Returns:
            scores (M, k') float32 descending, indices (M, k') int64 map rows, k' = min(k,
            count); a query whose shortlist is shorter gets -1 rows and -inf scores at the end.
        """
        if queries_full.ndim != 2 or queries_full.shape[1] < self.prefix_dim:
            raise SearchError(f'queries of shape {queries_full.shape} are shorter than the '
                              f'prefix {self.prefix_dim}')
        k = min(k, self.count)
        xq = l2_prefix(queries_full, self.prefix_dim)
        _, shortlist = self.candidates.search(queries_full, max(k, self.shortlist_k))
        scores = np.full((len(xq), k), -np.inf, np.float32)
        indices = np.full((len(xq), k), -1, np.int64)
        for q, rows in enumerate(shortlist):
            rows = sorted_rows(rows)
            exact = exact_scores(self.store, rows, xq[q])
            top = np.argsort(-exact, kind='stable')[:k]
            scores[q, :len(top)] = exact[top]
            indices[q, :len(top)] = rows[top]
        return scores, indices
