"""Inner-product search over L2-normalised embedding prefixes: the one index every layer uses.

Any prefix size is indexed from the stored full-size embeddings (no re-embedding); the index holds
only the prefix, so its memory scales with the prefix size. ``flat`` is exact FAISS IndexFlatIP;
``ivf`` and ``hnsw`` are approximate, and their recall against exact search is measured when they
are built, with held-out queries (sampled rows moved by noise, never rows themselves: a row finds
itself, which made the figure optimistic). A flat index can also grow a row at a time and be
searched over its first rows only: the loop-closure keyframe store appends keyframes in time order,
and only those older than a window may match. Single queries run FAISS on one thread (measured ~2x
faster than two on a 2-core CPU); batches of ``TORCH_BATCH_MIN`` or more exact queries use one
torch matmul + topk over the same memory, which measured 2-4x faster than FAISS flat for batches
(benchmarks/bench_search.py).
"""

from __future__ import annotations

import logging
import math
import os

import faiss
import numpy as np
import torch

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.prefix import l2_prefix

log = logging.getLogger(__name__)

INDEX_TYPES = ('flat', 'ivf', 'hnsw')
TORCH_BATCH_MIN = 32       # exact batches at least this large go through torch
HNSW_M = 32                # graph degree
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 64
IVF_NPROBE = 32
RECALL_SAMPLE = 200        # held-out queries used to measure approximate recall
RECALL_K = 10
HELD_OUT_NOISE = 0.5       # noise norm of a held-out query, relative to its unit source row
NORMALISE_BLOCK = 8192     # rows per l2_prefix call when building a flat index
TORCH_BLOCK_SCORES = 1 << 26    # scores per torch matmul block (256 MiB of float32)


class PrefixIndex:
    """A FAISS index over the first ``prefix_dim`` values of each embedding, L2-normalised.

    Attributes:
        prefix_dim: leading dimensions searched.
        index_type: 'flat', 'ivf' or 'hnsw'.
        count: number of entries.
        nbytes: memory of the index's vectors and structure in bytes.
        recall_vs_exact: Recall@10 of the approximate index against exact search, over
            held-out queries that are not database rows (1.0 for flat).
    """

    def __init__(self, embeddings_full: np.ndarray, prefix_dim: int, index_type: str = 'flat',
                 threads: int = 0) -> None:
        """Index ``l2_prefix(embeddings_full, prefix_dim)``.

        Args:
            embeddings_full: (N, E) full-size embeddings, any float dtype.
            prefix_dim: 1 <= prefix_dim <= E.
            index_type: 'flat' (exact), 'ivf' or 'hnsw'.
            threads: FAISS threads; 0 means 1 for single queries and all cores for batches.

        Raises:
            SearchError: an unknown index type, a bad prefix size, or no rows for an
                approximate index (a flat one may start empty and grow with ``add``).
        """
        if index_type not in INDEX_TYPES:
            raise SearchError(
                f'search.index_type must be one of {INDEX_TYPES}, got {index_type!r}')
        if embeddings_full.ndim != 2 or (len(embeddings_full) == 0 and index_type != 'flat'):
            raise SearchError(f'cannot index embeddings of shape {embeddings_full.shape}')
        if not 1 <= prefix_dim <= embeddings_full.shape[1]:
            raise SearchError(f'prefix size {prefix_dim} is outside 1..{embeddings_full.shape[1]} '
                              "(the map's embedding size)")
        self.prefix_dim = prefix_dim
        self.index_type = index_type
        self.threads = threads
        self.count = len(embeddings_full)
        self.recall_vs_exact = 1.0
        self._xb: np.ndarray | None = None
        if index_type == 'flat':
            self._index = _build_flat(embeddings_full, prefix_dim)
            self._xb = self._view()
        else:
            xb = l2_prefix(embeddings_full, prefix_dim)
            self._index = _build_approximate(xb, index_type)
            self.recall_vs_exact = self._recall_vs_exact(held_out_queries(xb), xb)
            log.info('%s index, prefix %d, %d entries: Recall@%d vs exact %.3f', index_type,
                     prefix_dim, self.count, RECALL_K, self.recall_vs_exact)
        self.nbytes = _nbytes(self._index, index_type, self.count, prefix_dim)

    def add(self, embeddings_full: np.ndarray) -> None:
        """Append rows to a flat index; they get the next row numbers.

        Args:
            embeddings_full: (M, E') embeddings, E' >= prefix_dim.

        Raises:
            SearchError: an approximate index, or rows shorter than the prefix.
        """
        if self.index_type != 'flat':
            raise SearchError(f'only a flat index can grow, this one is {self.index_type}')
        if embeddings_full.ndim != 2 or embeddings_full.shape[1] < self.prefix_dim:
            raise SearchError(f'rows of shape {embeddings_full.shape} are shorter than the '
                              f'prefix {self.prefix_dim}')
        self._index.add(l2_prefix(embeddings_full, self.prefix_dim))
        self.count = self._index.ntotal
        self._xb = self._view()
        self.nbytes = self.count * self.prefix_dim * 4

    def search(self, queries_full: np.ndarray, k: int,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k entries by cosine similarity of the prefixes.

        Args:
            queries_full: (M, E') embeddings with E' >= prefix_dim (full-size or longer prefix).
            k: results per query; at most ``count`` (or ``limit``) are returned.
            limit: search only rows [0, limit) (a flat index); None searches all.

        Returns:
            scores (M, k) float32 descending, indices (M, k) int64 map rows.
        """
        if queries_full.ndim != 2 or queries_full.shape[1] < self.prefix_dim:
            raise SearchError(f'queries of shape {queries_full.shape} are shorter than the '
                              f'prefix {self.prefix_dim}')
        rows = self.count if limit is None else max(0, min(limit, self.count))
        k = min(k, rows)
        xq = l2_prefix(queries_full, self.prefix_dim)
        if k == 0:
            return np.empty((len(xq), 0), np.float32), np.empty((len(xq), 0), np.int64)
        if self._xb is not None and len(xq) >= TORCH_BATCH_MIN:
            return _torch_topk(xq, self._xb[:rows], k)
        faiss.omp_set_num_threads(self.threads or (1 if len(xq) == 1 else os.cpu_count() or 1))
        params = None if rows == self.count else faiss.SearchParameters(
            sel=faiss.IDSelectorRange(0, rows))
        scores, indices = self._index.search(xq, k, params=params)
        return scores, indices.astype(np.int64, copy=False)

    def _view(self) -> np.ndarray:
        """Return a view of FAISS's own copy of the flat vectors, for the torch batch path."""
        if self.count == 0:
            return np.empty((0, self.prefix_dim), np.float32)
        xb = faiss.rev_swig_ptr(self._index.get_xb(), self.count * self.prefix_dim)
        return xb.reshape(self.count, self.prefix_dim)

    def measure_recall(self, queries_full: np.ndarray, database_full: np.ndarray) -> float:
        """Recall@10 against exact search for real held-out queries (e.g. another traversal).

        Args:
            queries_full: (M, E') query embeddings, E' >= prefix_dim, not database rows.
            database_full: (N, E) the rows this index was built from.
        """
        return self._recall_vs_exact(l2_prefix(queries_full, self.prefix_dim),
                                     l2_prefix(database_full, self.prefix_dim))

    def _recall_vs_exact(self, xq: np.ndarray, xb: np.ndarray) -> float:
        """Fraction of the exact top-k (k = RECALL_K) this index also returns, over queries."""
        k = min(RECALL_K, self.count)
        _, exact = faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)
        _, found = self.search(xq, k)
        hits = sum(len(np.intersect1d(e, f)) for e, f in zip(exact, found))
        return hits / exact.size


def held_out_queries(xb: np.ndarray, count: int = RECALL_SAMPLE, seed: int = 0) -> np.ndarray:
    """Make queries near the database that are not its rows, for a truthful recall figure.

    Each is a sampled unit row plus isotropic Gaussian noise of norm HELD_OUT_NOISE,
    normalised again (cosine ~0.9 to its source row, as a revisit's view is to the mapped one).

    Args:
        xb: (N, d) unit rows.

    Returns:
        (min(count, N), d) float32 unit rows.
    """
    rng = np.random.default_rng(seed)
    rows = xb[np.sort(rng.choice(len(xb), min(count, len(xb)), replace=False))]
    noise = rng.standard_normal(rows.shape).astype(np.float32)
    noise *= HELD_OUT_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    return l2_prefix(rows + noise, xb.shape[1])


def _build_flat(embeddings_full: np.ndarray, dim: int) -> faiss.Index:
    """Build an IndexFlatIP of the normalised prefixes, in blocks to bound temporary memory."""
    xb = np.empty((len(embeddings_full), dim), np.float32)
    for start in range(0, len(xb), NORMALISE_BLOCK):
        xb[start:start + NORMALISE_BLOCK] = l2_prefix(
            embeddings_full[start:start + NORMALISE_BLOCK], dim)
    index = faiss.IndexFlatIP(dim)
    index.add(xb)
    return index


def _build_approximate(xb: np.ndarray, index_type: str) -> faiss.Index:
    n, d = xb.shape
    if index_type == 'hnsw':
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        # ~4 sqrt(N) lists, each with enough rows (FAISS wants >= 39 per centroid) to train
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        train = xb[np.random.default_rng(0).choice(n, min(n, 256 * nlist), replace=False)]
        index.train(train)
        index.nprobe = min(nlist, IVF_NPROBE)
    index.add(xb)
    return index


def _nbytes(index: faiss.Index, index_type: str, n: int, d: int) -> int:
    vectors = n * d * 4
    if index_type == 'flat':
        return vectors
    if index_type == 'hnsw':
        hnsw = index.hnsw
        return vectors + 4 * hnsw.neighbors.size() + 4 * hnsw.levels.size() \
            + 8 * hnsw.offsets.size()
    return vectors + 8 * n + 4 * index.nlist * d      # codes, ids, centroids


def _torch_topk(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by blocks of queries, so the (block, N) score matrix stays ~256 MiB."""
    block = max(1, TORCH_BLOCK_SCORES // len(xb))
    scores = np.empty((len(xq), k), np.float32)
    indices = np.empty((len(xq), k), np.int64)
    database = torch.from_numpy(xb)
    with torch.inference_mode():
        for start in range(0, len(xq), block):
            top = torch.topk(torch.from_numpy(xq[start:start + block]) @ database.T, k, dim=1)
            scores[start:start + block] = top.values.numpy()
            indices[start:start + block] = top.indices.numpy()
    return scores, indices
