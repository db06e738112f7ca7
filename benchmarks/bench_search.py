"""Search cost against prefix size: single queries and batches, with the full 768-d baseline.

For each map size N and prefix size d it prints one JSON line per mode: the PrefixIndex search
time (median, p95), the 768-d search measured in the same run (baseline) and the speed-up, the
index memory per map entry, and the time to switch to that prefix (build the index from the
stored full-size embeddings; median and p95 over ``--switch-repeats`` builds). Single queries
(``batch1``) run on FAISS with one thread; batches use PrefixIndex's batch path, and also report
FAISS flat and numpy on the same batch so the choice of path stays checked. Timings are
interleaved across prefix sizes, so load from other processes hits every size alike.

Physical floor: a single exact query reads every indexed vector once, so it cannot beat
``nbytes / read bandwidth`` (``scan_floor_ms``; bandwidth ``read_gbps`` measured as a
single-thread numpy sum over the embeddings); ``over_floor`` is the median over that floor.

    .venv/bin/python benchmarks/bench_search.py                     # N = 10k, 100k
    .venv/bin/python benchmarks/bench_search.py --sizes 1000000     # 1M (~8 GB of RAM)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import faiss
import numpy as np

from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.index.prefix_index import PrefixIndex

FULL_DIM = 768


def stats_ms(samples_s: list[float]) -> dict[str, float]:
    """Median and p95 in milliseconds."""
    p50, p95 = np.percentile(np.asarray(samples_s) * 1e3, [50, 95])
    return {'median_ms': round(float(p50), 4), 'p95_ms': round(float(p95), 4)}


def timed(fn, *args) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def numpy_topk(xq: np.ndarray, xb: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k with one matmul and argpartition (the alternative batch path)."""
    scores = xq @ xb.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def read_gbps(array: np.ndarray, repeats: int = 5) -> float:
    """Single-thread read bandwidth: the best of ``repeats`` sums over ``array``."""
    array.sum()
    best = min(timed(np.add.reduce, array.reshape(-1)) for _ in range(repeats))
    return array.nbytes / best / 1e9


def run(n: int, dims: list[int], args: argparse.Namespace, info: dict) -> None:
    """All prefix sizes for one map size."""
    rng = np.random.default_rng(args.seed)
    full = rng.standard_normal((n, FULL_DIM), dtype=np.float32)
    gbps = read_gbps(full)
    queries = rng.standard_normal((args.repeats + args.batch, FULL_DIM), dtype=np.float32)
    indexes, switch_s = {}, {d: [] for d in dims}
    for d in dims:
        PrefixIndex(full[:1000], d)                  # warm-up of the build path
    for _ in range(args.switch_repeats):             # interleaved over d
        for d in dims:
            indexes.pop(d, None)
            start = time.perf_counter()
            indexes[d] = PrefixIndex(full, d)
            switch_s[d].append(time.perf_counter() - start)
    single = {d: [] for d in dims}
    batch = {d: {'prefix_index': [], 'faiss_flat': [], 'numpy': []} for d in dims}
    for d in dims:                                    # warm-up of every path
        indexes[d].search(queries[:1], args.k)
        indexes[d].search(queries[:args.batch], args.k)
    for i in range(args.repeats):                    # interleaved over d
        for d in dims:
            single[d].append(timed(indexes[d].search, queries[i:i + 1], args.k))
    xq_batch = queries[args.repeats:]
    agree = {}
    for _ in range(args.batch_repeats):
        for d in dims:
            index = indexes[d]
            xq = xq_batch[:, :d] / np.linalg.norm(xq_batch[:, :d], axis=1, keepdims=True)
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            batch[d]['prefix_index'].append(timed(index.search, xq_batch, args.k))
            batch[d]['faiss_flat'].append(timed(index._index.search, xq, args.k))
            batch[d]['numpy'].append(timed(numpy_topk, xq, index._xb, args.k))
            if d not in agree:
                _, mine = index.search(xq_batch, args.k)
                _, theirs = index._index.search(xq, args.k)
                agree[d] = float((mine == theirs).mean())
    base_single = np.median(single[FULL_DIM])
    base_batch = np.median(batch[FULL_DIM]['prefix_index'])
    for d in dims:
        common = {'bench': 'search', 'n': n, 'dim': d, 'k': args.k,
                  'bytes_per_entry': indexes[d].nbytes / n,
                  'index_mib': round(indexes[d].nbytes / 2**20, 1),
                  'switch_prefix_ms': stats_ms(switch_s[d]),
                  'baseline_dim': FULL_DIM, **info}
        floor_ms = indexes[d].nbytes / gbps / 1e6     # one pass over the vectors
        print(json.dumps({**common, 'mode': 'batch1', 'faiss_threads': 1, **stats_ms(single[d]),
                          'read_gbps': round(gbps, 2), 'scan_floor_ms': round(floor_ms, 4),
                          'over_floor': round(float(np.median(single[d])) * 1e3 / floor_ms, 2),
                          'baseline_median_ms': round(float(base_single) * 1e3, 4),
                          'speedup_vs_baseline': round(float(base_single
                                                             / np.median(single[d])), 2)}),
              flush=True)
        paths = {name: stats_ms(samples) for name, samples in batch[d].items()}
        print(json.dumps({**common, 'mode': f'batch{args.batch}', **paths['prefix_index'],
                          'per_query_ms': round(paths['prefix_index']['median_ms']
                                                / args.batch, 4),
                          'faiss_flat': paths['faiss_flat'], 'numpy': paths['numpy'],
                          'faiss_over_prefix_index': round(
                              np.median(batch[d]['faiss_flat'])
                              / np.median(batch[d]['prefix_index']), 2),
                          'same_indices_as_faiss': agree[d],
                          'baseline_median_ms': round(float(base_batch) * 1e3, 4),
                          'speedup_vs_baseline': round(float(
                              base_batch / np.median(batch[d]['prefix_index'])), 2)}),
              flush=True)


def main() -> None:
    """Parse flags and print the JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[10_000, 100_000],
                        help='map sizes N (add 1000000 if memory permits: ~8 GB)')
    parser.add_argument('--dims', type=int, nargs='+', default=[32, 64, 128, 256, FULL_DIM])
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--repeats', type=int, default=200, help='single queries per size')
    parser.add_argument('--batch', type=int, default=256, help='queries per batch')
    parser.add_argument('--batch-repeats', type=int, default=5)
    parser.add_argument('--switch-repeats', type=int, default=3,
                        help='index builds per prefix size (the prefix-switch time)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    dims = sorted(set(args.dims) | {FULL_DIM})
    info = {'cpus': os.cpu_count(), 'faiss': faiss.__version__, **provenance()}
    for n in args.sizes:
        run(n, dims, args, info)


if __name__ == '__main__':
    main()
