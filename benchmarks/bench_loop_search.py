"""Loop-closure keyframe search: the growing FAISS IndexFlatIP vs a numpy matrix slice.

The detector appends one keyframe at a time and searches only keyframes older than the exclusion
window, i.e. a leading range of ids. KeyframeStore does that with a FAISS IndexFlatIP and an
IDSelectorRange; the baseline is a numpy matrix-vector product over the slice plus argpartition.
This times one query (and one append) for map sizes up to 10k keyframes.

    .venv/bin/python benchmarks/bench_loop_search.py --sizes 1000 10000 --dims 64 256
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import faiss
import numpy as np

from aesvc_vpr.common.provenance import git_commit
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.loop.keyframes import KeyframeStore


def timed(fn, repeats: int, warmup: int) -> list[float]:
    """Milliseconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def numpy_search(units: np.ndarray, query: np.ndarray, n_eligible: int, k: int) -> np.ndarray:
    """Search like the baseline: brute-force cosine over the eligible slice, argpartition."""
    scores = units[:n_eligible] @ query
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


def main() -> None:
    """Print one JSON line per (size, dim)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000])
    parser.add_argument('--dims', type=int, nargs='+', default=[64, 256])
    parser.add_argument('--k', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=300)
    parser.add_argument('--warmup', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for dim in args.dims:
        for n in args.sizes:
            full = rng.standard_normal((n, dim)).astype(np.float32)
            store = KeyframeStore()
            for i, row in enumerate(full):
                store.append(i, row, row, None, 0.0)
            units = l2_prefix(full, dim)
            query = l2_prefix(rng.standard_normal((1, dim)).astype(np.float32), dim)[0]
            eligible = int(0.9 * n)          # the newest 10 % are inside the exclusion window
            same = np.array_equal(store.search(query, eligible, args.k)[1],
                                  numpy_search(units, query, eligible, args.k))
            faiss_ms = timed(lambda: store.search(query, eligible, args.k), args.repeats,
                             args.warmup)
            numpy_ms = timed(lambda: numpy_search(units, query, eligible, args.k), args.repeats,
                             args.warmup)
            append_ms = timed(lambda: store.append(n, full[0], full[0], None, 0.0), 50, 5)
            ours, base = np.median(faiss_ms), np.median(numpy_ms)
            print(json.dumps({
                'bench': 'loop_search', 'keyframes': n, 'dim': dim, 'k': args.k,
                'same_result': bool(same),
                'faiss_median_ms': round(float(ours), 4),
                'faiss_p95_ms': round(float(np.percentile(faiss_ms, 95)), 4),
                'numpy_median_ms': round(float(base), 4),
                'numpy_p95_ms': round(float(np.percentile(numpy_ms, 95)), 4),
                'numpy_over_faiss': round(float(base / ours), 3),
                'append_median_ms': round(float(np.median(append_ms)), 4),
                'numpy': np.__version__, 'faiss': faiss.__version__,
                'python': platform.python_version(), 'commit': git_commit()}))


if __name__ == '__main__':
    main()
