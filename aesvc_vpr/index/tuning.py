"""Choose a saved index's nprobe by measuring its recall against exact search on the map itself.

How many inverted lists a query must visit for a given recall depends on the map: its size
(10M rows needed 448 lists of 8192 where 1M needed 256 of 2048, benchmarks/README.md) and how
its embeddings cluster. Instead of a fixed default, ``tune_nprobe`` measures: it makes held-out
queries from sampled map rows (noisy copies, never rows themselves), finds their exact top-10
by brute force over the (memory-mapped) store, and walks up a ladder of nprobe values until the
search the node runs (the index's shortlist, re-ranked exactly) reaches the target Recall@1 and
Recall@10 against exact search.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import held_out_queries
from aesvc_vpr.index.saved import SavedIndex

NPROBE_LADDER = (8, 16, 32, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768, 1024, 1536,
                 2048, 3072, 4096)
TUNING_QUERIES = 200
TARGET_RECALL = 0.95
RECALL_K = 10
EXACT_BLOCK = 1 << 18       # store rows per brute-force block (128 MiB of float32 at 128-d)


@dataclass(frozen=True)
class Tuning:
    """What ``tune_nprobe`` measured, as kept in map.json beside the index."""

    nprobe: int            # the smallest ladder value that reached the target (or the largest)
    reached: bool          # False: even the largest nprobe tried fell short of the target
    target: float
    recall_at_1: float     # share of queries whose top-1 is the exact top-1
    recall_at_10: float    # share of the exact top-10 found in the top-10
    shortlist_k: int       # the node's search.shortlist_k the figures hold for
    queries: int

    def as_dict(self) -> dict[str, object]:
        """JSON-able record."""
        return asdict(self)


def exact_topk(store: np.ndarray, queries_full: np.ndarray, dim: int,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k cosine of the ``dim`` prefixes, block by block over a (mapped) store.

    Returns:
        scores (M, k) float32 and rows (M, k) int64, best first.
    """
    xq = torch.from_numpy(l2_prefix(queries_full, dim))
    k = min(k, len(store))
    best_s = torch.full((len(xq), k), -np.inf)
    best_i = torch.zeros((len(xq), k), dtype=torch.int64)
    for start in range(0, len(store), EXACT_BLOCK):
        xb = torch.from_numpy(l2_prefix(store[start:start + EXACT_BLOCK], dim))
        top = torch.topk(xq @ xb.T, min(k, len(xb)), dim=1)
        merged_s = torch.cat([best_s, top.values], 1)
        merged_i = torch.cat([best_i, top.indices + start], 1)
        order = torch.topk(merged_s, k, dim=1).indices
        best_s, best_i = merged_s.gather(1, order), merged_i.gather(1, order)
    return best_s.numpy(), best_i.numpy()


def recalls_vs_exact(found: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """Return Recall@1 (same top-1) and Recall@10 (share of the exact top-10 found)."""
    k = min(RECALL_K, exact.shape[1], found.shape[1])
    at_1 = float(np.mean(found[:, 0] == exact[:, 0]))
    at_k = float(np.mean([len(np.intersect1d(f[:k], e[:k])) / k
                          for f, e in zip(found, exact)]))
    return at_1, at_k


def tune_nprobe(index: SavedIndex, store: np.ndarray, shortlist_k: int,
                target: float = TARGET_RECALL, queries: int = TUNING_QUERIES,
                seed: int = 0) -> Tuning:
    """Set ``index``'s nprobe to the smallest ladder value whose search reaches ``target``.

    The search measured is the node's: ``index`` gives ``shortlist_k`` candidates, re-ranked
    exactly at the index's prefix from ``store``.

    Args:
        index: a built saved index over ``store``'s rows (its nprobe is changed).
        store: (N, E) the map's stored embeddings (may be memory-mapped).
        shortlist_k: candidates re-ranked per query (the node's ``search.shortlist_k``).
        target: Recall@1 and Recall@10 against exact search to reach, in (0, 1].
        queries: held-out queries made from sampled rows.

    Raises:
        SearchError: a target outside (0, 1] or fewer than one query.
    """
    if not 0.0 < target <= 1.0 or queries < 1:
        raise SearchError(f'recall target must be in (0, 1] and queries >= 1, got {target}, '
                          f'{queries}')
    dim = index.prefix_dim
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(store), min(queries, len(store)), replace=False))
    xq = held_out_queries(l2_prefix(np.asarray(store[rows]), dim), len(rows), seed)
    _, exact = exact_topk(store, xq, dim, RECALL_K)
    funnel = FunnelIndex(index, store, dim, shortlist_k)
    nlist = index.nlist
    ladder = [p for p in NPROBE_LADDER if p < nlist] + [nlist]
    for nprobe in ladder:
        index.set_nprobe(nprobe)
        at_1, at_k = recalls_vs_exact(funnel.search(xq, exact.shape[1])[1], exact)
        if at_1 >= target and at_k >= target:
            break
    return Tuning(nprobe=index.nprobe, reached=at_1 >= target and at_k >= target,
                  target=target, recall_at_1=round(at_1, 4), recall_at_10=round(at_k, 4),
                  shortlist_k=shortlist_k, queries=len(rows))
