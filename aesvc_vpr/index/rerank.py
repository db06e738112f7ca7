"""Exact scores of a few rows of a large (memory-mapped, float16) store: the re-rank's inner loop.

A shortlist of 1600 rows out of a 10M-row store costs little arithmetic (1600 x 128 multiply-adds)
but, done the obvious way, ~4.5 ms of CPU per query on the 2-core test machine
(benchmarks/README.md, "10M latency"): ``np.unique`` sorts through a slow general path (0.26 ms
against 0.03 ms for ``np.sort``), fancy indexing a ``np.memmap`` gathers rows at half the speed of
``np.take``, and numpy casts float16 to float32 one value at a time (0.64 ms for 1600 x 128
values) where torch uses the CPU's F16C conversion (0.06-0.1 ms, kept off torch's thread pool).
Scores are bit-identical to ``l2_prefix(store[rows], dim) @ query``: the cast is exact and the
normalisation is the same code.
"""

from __future__ import annotations

import numpy as np
import torch

from aesvc_vpr.index.prefix import normalise_rows

TORCH_GRAIN_SIZE = 32768     # at::internal::GRAIN_SIZE: smaller element-wise ops stay serial


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Return the valid rows (>= 0) sorted, without repeats, as ``np.unique`` returns them.

    Sorted rows read a memory-mapped store front to back, and an index's ties then go to the
    lower row, as in an exact search.
    """
    rows = np.sort(np.asarray(rows, np.int64)[rows >= 0])
    if len(rows) > 1:
        rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]
    return rows


def prefix_rows(store: np.ndarray, rows: np.ndarray, dim: int) -> np.ndarray:
    """Gather ``rows`` of ``store`` and return their L2-normalised ``dim`` prefixes.

    Args:
        store: (N, E) embeddings, any float dtype (float16 maps are the case this is fast for).
        rows: (R,) int64 row numbers, preferably sorted (``sorted_rows``).
        dim: prefix size, 1 <= dim <= E.

    Returns:
        (R, dim) float32, C-contiguous, unit rows (an all-zero row stays zero).
    """
    return unit_prefix(np.take(store, rows, axis=0), dim)


def unit_prefix(gathered: np.ndarray, dim: int) -> np.ndarray:
    """Return the L2-normalised ``dim`` prefixes of gathered rows, as ``l2_prefix`` does.

    Args:
        gathered: (R, E) rows in memory (not a mapping), any float dtype.
        dim: prefix size, 1 <= dim <= E.

    Returns:
        (R, dim) float32, C-contiguous, unit rows.
    """
    if gathered.dtype != np.float16:
        return normalise_rows(np.array(gathered[:, :dim], dtype=np.float32, order='C'))
    # (R, E) float16 -> (R, dim) float32 through F16C, exact as numpy's cast is, in pieces
    # below torch's parallel grain: one copy of 1600 x 128 values on torch's 2-thread pool
    # took 4 ms of the caller's CPU and 8 ms of the process's on the loaded test machine
    # (waiting for, then spinning in, the pool), against 0.1 ms in pieces on the calling thread
    prefix = np.empty((len(gathered), dim), np.float32)
    source, target = torch.from_numpy(np.ascontiguousarray(gathered)), torch.from_numpy(prefix)
    step = max(1, (TORCH_GRAIN_SIZE - 1) // dim)
    for start in range(0, len(gathered), step):
        target[start:start + step].copy_(source[start:start + step, :dim])
    return normalise_rows(prefix)


def exact_scores(store: np.ndarray, rows: np.ndarray, query_unit: np.ndarray) -> np.ndarray:
    """Cosine of ``query_unit`` with the prefixes of ``rows``, the query's length.

    Args:
        store: (N, E) embeddings.
        rows: (R,) int64 row numbers.
        query_unit: (dim,) float32 unit query prefix.

    Returns:
        (R,) float32 cosine scores.
    """
    return prefix_rows(store, rows, len(query_unit)) @ query_unit
