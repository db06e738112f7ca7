"""Large maps: saved compressed index + exact re-rank against exact search, and the funnel.

For each map size N it writes a real map directory of ordered synthetic embeddings
(``data.synthetic_embeddings.OrderedConfig``: seeded places along a route, fp16 store), draws
held-out query views (never database rows), and computes the exact top-10 at ``--prefix`` by
brute force. Then, per index recipe, it builds and commits the saved index (``index-map``),
times a node start (``MapDatabase.load`` with its quick check + ``load_saved_index``), and for
each nprobe and shortlist_k prints one JSON line: single-query latency p50/p95 (one thread),
Recall@1 and Recall@10 against exact search, the index's bytes per entry (its file, mapped, and
the anonymous and mapped memory a node start in a fresh process adds after 200 searches), build
and load seconds. The baseline in the same run is
the exact flat index at the same prefix (single queries). With ``--funnel``, at the first size it
also measures a flat shortlist at ``--shortlist-dim`` re-ranked at ``--funnel-dim`` against the
exact ``--funnel-dim`` search: top-1 agreement and the latency ratio. ``--old-path`` adds the
re-rank as it was before issue 16's third pass as a same-run baseline
(``old_cpu_p50_over_cpu_p50``), ``--stages`` a per-stage CPU and page-fault breakdown,
``--threads`` the search.threads values to time.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000 --funnel
    .venv/bin/python benchmarks/bench_scale.py --sizes 10000000 --recipes ivfpq --no-flat

Needs about N * dim * 2 bytes of disk in ``--workdir`` and, for the map write, ~4x that of RAM.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import resource
import shutil
import subprocess
import sys
import time

import faiss
import numpy as np
import torch

from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.data.synthetic_embeddings import (ordered_database_blocks, ordered_queries,
                                                 OrderedConfig)
from aesvc_vpr.errors import MapError
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.rerank import sorted_rows, unit_prefix
from aesvc_vpr.index.tuning import exact_topk, recalls_vs_exact
from aesvc_vpr.retrieval.map_index import index_map, load_saved_index, saved_index_entry
from aesvc_vpr.retrieval.mapdb import MapDatabase

LATENCY_QUERIES = 300       # single queries timed per configuration (after WARMUP)
WARMUP = 20


def stats_ms(samples_s: list[tuple]) -> dict[str, float]:
    """Median and p95 in milliseconds of wall time and of CPU time; median page faults.

    On a shared machine the wall time of a niced process mostly measures the scheduler; the
    CPU time is the search's own cost: the calling thread's (FAISS runs single queries in it)
    or, when samples carry the process's CPU time too (``single_queries``), all threads'
    (``proc_cpu_*``: what a multi-threaded search costs the machine, spin-waits included).
    """
    columns = [np.asarray(column) for column in zip(*samples_s)]
    wall, cpu = columns[0] * 1e3, columns[1] * 1e3
    p50, p95 = np.percentile(wall, [50, 95])
    cpu50, cpu95 = np.percentile(cpu, [50, 95])
    out = {'p50_ms': round(float(p50), 3), 'p95_ms': round(float(p95), 3),
           'cpu_p50_ms': round(float(cpu50), 3), 'cpu_p95_ms': round(float(cpu95), 3)}
    if len(columns) > 2:
        proc50, proc95 = np.percentile(columns[2] * 1e3, [50, 95])
        out.update(proc_cpu_p50_ms=round(float(proc50), 3),
                   proc_cpu_p95_ms=round(float(proc95), 3),
                   minor_faults_p50=float(np.median(columns[3])),
                   major_faults_p50=float(np.median(columns[4])))
    return out


def memory_kib() -> dict[str, int]:
    """Anonymous and file-backed resident memory of this process (KiB)."""
    fields = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        key, _, value = line.partition(':')
        if key in ('RssAnon', 'RssFile'):
            fields[key] = int(value.split()[0])
    return fields


FOOTPRINT = """
import json, sys, time
import numpy as np
from bench_scale import memory_kib
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.retrieval.map_index import load_saved_index
from aesvc_vpr.retrieval.mapdb import MapDatabase
root, prefix, nprobe, k = sys.argv[1], *map(int, sys.argv[2:5])
before = memory_kib()
start = time.perf_counter()
mapdb = MapDatabase.load(root)
index = load_saved_index(mapdb, prefix)
load_s = time.perf_counter() - start
index.set_nprobe(nprobe)
funnel = FunnelIndex(index, mapdb.store, prefix, k)
queries = np.random.default_rng(0).standard_normal((200, mapdb.store.shape[1]))
for q in queries:
    funnel.search(q[None].astype(np.float32), 10)
after = memory_kib()
print(json.dumps({'load_s': load_s, 'anon_kib': after['RssAnon'] - before['RssAnon'],
                  'file_kib': after['RssFile'] - before['RssFile']}))
"""


def footprint(root: Path, prefix: int, nprobe: int, shortlist_k: int) -> dict:
    """Node start in a fresh process: load seconds, anonymous and mapped memory it added."""
    out = subprocess.run([sys.executable, '-c', FOOTPRINT, str(root), str(prefix), str(nprobe),
                          str(shortlist_k)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent,
                         env={**os.environ, 'PYTHONPATH': os.pathsep.join(sys.path)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_map(root: Path, cfg: OrderedConfig, count: int) -> float:
    """Write a head-less map of ``count`` ordered synthetic rows; seconds taken.

    The rows are generated a block at a time into a memory-mapped staging file beside the map,
    so no copy of all rows is held in memory (10M x 256 float16 is 5 GB).
    """
    start = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    staging = root.parent / f'.{root.name}.rows.npy'
    raw = np.lib.format.open_memmap(staging, 'w+', np.float16, (count, cfg.dim))
    at = 0
    for block in ordered_database_blocks(cfg, count):
        raw[at:at + len(block)] = block
        at += len(block)
    raw.flush()
    try:
        MapDatabase.write(root, raw, np.zeros((count, 2)), '10S', backbone_name='synthetic',
                          backbone_fingerprint='0' * 64, extra={'synthetic': synthetic_id(cfg)})
    finally:
        del raw
        staging.unlink(missing_ok=True)
    return time.perf_counter() - start


def synthetic_id(cfg: OrderedConfig) -> str:
    """Name what a map of ordered synthetic rows was generated from (checked by ``--reuse``)."""
    return f'ordered dim={cfg.dim} seed={cfg.seed} {cfg!r}'


def reusable_map(root: Path, cfg: OrderedConfig, count: int) -> bool:
    """Tell whether ``root`` holds a loadable map of exactly these synthetic rows."""
    try:
        mapdb = MapDatabase.load(root)
    except MapError:
        return False
    return mapdb.count == count and mapdb.meta.get('synthetic') == synthetic_id(cfg)


def cached_exact(args: argparse.Namespace, store: np.ndarray, queries: np.ndarray, dim: int,
                 k: int) -> np.ndarray:
    """Return the exact top-k rows, read from ``--workdir`` when ``--reuse`` finds them there."""
    cache = Path(args.workdir) / (f'exact_{len(store)}_d{dim}_k{k}_q{len(queries)}_'
                                  f's{args.seed}.npy')
    if args.reuse and cache.is_file():
        return np.load(cache)
    _, exact = exact_topk(store, queries, dim, k)
    tmp = cache.with_suffix('.tmp.npy')
    np.save(tmp, exact)
    os.replace(tmp, cache)
    return exact


def single_queries(index, queries: np.ndarray, k: int,
                   warmup: int = WARMUP) -> tuple[list[tuple], np.ndarray]:
    """Search one query at a time; return per-query samples (after a warm-up) and the results.

    A sample is (wall s, this thread's CPU s, the process's CPU s, minor faults, major faults).
    """
    for q in queries[:warmup]:
        index.search(q[None], k)
    times, found = [], []
    for q in queries:
        faults = resource.getrusage(resource.RUSAGE_SELF)
        start, start_cpu, start_proc = time.perf_counter(), time.thread_time(), time.process_time()
        found.append(index.search(q[None], k)[1][0])
        wall, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
        proc = time.process_time() - start_proc
        after = resource.getrusage(resource.RUSAGE_SELF)
        times.append((wall, cpu, proc, after.ru_minflt - faults.ru_minflt,
                      after.ru_majflt - faults.ru_majflt))
    return times, np.stack(found)


class OldRerank:
    """The saved index's re-rank as FunnelIndex did it before this pass: the baseline.

    ``np.unique`` of the shortlist, fancy indexing of the memory-mapped store, numpy's float16
    cast in ``l2_prefix``, and no prefaulting of the mapping.
    """

    def __init__(self, candidates, store: np.ndarray, prefix_dim: int, shortlist_k: int):
        """Re-rank ``shortlist_k`` candidates of ``candidates`` from ``store``."""
        self.candidates, self.store = candidates, store
        self.prefix_dim, self.shortlist_k = prefix_dim, shortlist_k

    def search(self, queries_full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by exact cosine among the shortlist (one query at a time)."""
        xq = l2_prefix(queries_full, self.prefix_dim)
        _, shortlist = self.candidates.search(queries_full, max(k, self.shortlist_k))
        indices = np.full((len(xq), k), -1, np.int64)
        scores = np.full((len(xq), k), -np.inf, np.float32)
        for q, rows in enumerate(shortlist):
            rows = np.unique(rows[rows >= 0])
            exact = l2_prefix(self.store[rows], self.prefix_dim) @ xq[q]
            top = np.argsort(-exact, kind='stable')[:k]
            scores[q, :len(top)], indices[q, :len(top)] = exact[top], rows[top]
        return scores, indices


def stage_breakdown(saved, store: np.ndarray, queries: np.ndarray, prefix: int,
                    shortlist_k: int) -> dict[str, float]:
    """Median CPU ms (this thread) and minor faults of each stage of one saved-index query.

    The stages of ``FunnelIndex.search`` over a ``SavedIndex``, one FAISS thread: the coarse
    quantizer (nprobe nearest lists), the fast-scan of those lists into a shortlist of
    ``shortlist_k`` (codes and the result handler), sorting the shortlist, gathering its rows
    from the store, float16 -> float32 and normalising, and the dot products with the top-k.
    Beside them, the old path's stages on the same shortlists: ``np.unique``, fancy indexing,
    numpy's cast.
    """
    ivf = faiss.downcast_index(faiss.extract_index_ivf(saved._index))
    faiss.omp_set_num_threads(1)
    ivf.implem = 0
    stages: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        start = time.thread_time()
        out = fn(*args)
        stages.setdefault(f'{name}_cpu_ms', []).append((time.thread_time() - start) * 1e3)
        stages.setdefault(f'{name}_minor_faults', []).append(
            resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        return out

    for number, query in enumerate(queries):
        xq = l2_prefix(query[None], prefix)
        coarse_d, coarse_i = timed('coarse_quantizer', ivf.quantizer.search, xq, ivf.nprobe)
        _, shortlist = timed('fast_scan', ivf.search_preassigned, xq, shortlist_k, coarse_i,
                             coarse_d)
        # alternate queries between the two paths: the rows one gathers are then not in the
        # CPU caches for the other
        if number % 2 == 0:
            rows = timed('sort_shortlist', sorted_rows, shortlist[0])
            gathered = timed('gather_rows', np.take, store, rows, 0)
            unit = timed('fp16_to_fp32_normalise', unit_prefix, gathered, prefix)
        else:
            rows = timed('old_unique', np.unique, shortlist[0][shortlist[0] >= 0])
            gathered = timed('old_gather_fancy_index', store.__getitem__, rows)
            unit = timed('old_l2_prefix_numpy_cast', l2_prefix, gathered, prefix)
        timed('dot_topk', lambda: np.argsort(-(unit @ xq[0]), kind='stable')[:10])
    out = {name: round(float(np.median(values)), 3) for name, values in stages.items()}
    new = ('coarse_quantizer', 'fast_scan', 'sort_shortlist', 'gather_rows',
           'fp16_to_fp32_normalise', 'dot_topk')
    out['rerank_cpu_ms'] = round(sum(out[f'{n}_cpu_ms'] for n in new[2:]), 3)
    out['old_rerank_cpu_ms'] = round(sum(
        out[f'old_{n}_cpu_ms'] for n in ('unique', 'gather_fancy_index', 'l2_prefix_numpy_cast')
    ) + out['dot_topk_cpu_ms'], 3)
    return out


def recalls(found: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Recall@1 (same top-1) and Recall@10 (share of the exact top-10 found) vs exact."""
    r1, r10 = recalls_vs_exact(found, exact)
    return {'recall1_vs_exact': round(r1, 4), 'recall10_vs_exact': round(r10, 4)}


def bench_size(args: argparse.Namespace, count: int, info: dict) -> None:
    """All recipes and settings on one map size."""
    cfg = OrderedConfig(dim=args.dim, seed=args.seed)
    root = Path(args.workdir) / f'map_{count}'
    root.parent.mkdir(parents=True, exist_ok=True)
    reused = args.reuse and reusable_map(root, cfg, count)
    write_s = None if reused else write_map(root, cfg, count)
    queries, _ = ordered_queries(cfg, count, args.queries)
    mapdb = MapDatabase.load(root)
    start = time.perf_counter()
    exact = cached_exact(args, mapdb.store, queries, args.prefix, 10)
    base = {**info, 'entries': count, 'dim': args.dim, 'prefix': args.prefix,
            'queries': len(queries), 'map_reused': reused,
            'map_write_s': None if reused else round(write_s, 1),
            'exact_ground_truth_s': round(time.perf_counter() - start, 1)}
    print(json.dumps({**base, 'index': None, 'stage': 'map and ground truth ready',
                      'load_avg_1m': round(os.getloadavg()[0], 2)}), flush=True)
    flat_p50 = None
    if not args.no_flat:
        flat = PrefixIndex(mapdb.store, args.prefix)
        flat_queries = queries[:args.flat_queries]
        times, found = single_queries(flat, flat_queries, 10)
        flat_p50 = stats_ms(times)['p50_ms']
        print(json.dumps({**base, 'index': 'flat (exact, baseline)', **stats_ms(times),
                          'latency_queries': len(flat_queries),
                          **recalls(found, exact[:len(flat_queries)]),
                          'resident_bytes_per_entry': flat.nbytes / count,
                          'load_avg_1m': round(os.getloadavg()[0], 2)}), flush=True)
        del flat
    for recipe in args.recipes:
        before = memory_kib()
        entry = saved_index_entry(mapdb) if args.reuse else None
        if not (entry and entry['recipe'] == recipe and entry['prefix_dim'] == args.prefix):
            built = index_map(root, args.prefix, recipe, max(args.nprobes))
            entry = built.meta['files']['index']
            del built
        start = time.perf_counter()
        mapdb = MapDatabase.load(root)
        saved = load_saved_index(mapdb, args.prefix)
        load_s = time.perf_counter() - start
        for nprobe in args.nprobes:
            saved.set_nprobe(nprobe)
            for shortlist_k in args.shortlist_ks:
                setting = {**base, 'index': recipe, 'nprobe': nprobe, 'shortlist_k': shortlist_k}
                old_cpu_p50 = None
                if args.old_path:
                    old_cpu_p50 = bench_old_path(args, root, saved, queries, exact, setting)
                fresh = footprint(root, args.prefix, nprobe, shortlist_k)
                for threads in args.threads:
                    saved.threads = threads
                    load_start = round(os.getloadavg()[0], 2)
                    funnel = FunnelIndex(saved, mapdb.store, args.prefix, shortlist_k)
                    start = time.perf_counter()
                    if funnel.prefault_thread is not None:
                        funnel.prefault_thread.join()
                    prefault_s = time.perf_counter() - start
                    if args.stages and threads == args.threads[0]:
                        print(json.dumps({**setting, 'path': 'stages (one thread)',
                                          'stage_queries': args.stage_queries,
                                          'load_avg_1m_start': load_start,
                                          **stage_breakdown(saved, mapdb.store,
                                                            queries[:args.stage_queries],
                                                            args.prefix, shortlist_k),
                                          'load_avg_1m': round(os.getloadavg()[0], 2)}),
                              flush=True)
                    times, found = single_queries(funnel, queries, 10)
                    after = memory_kib()
                    row = {**setting, 'path': 'product', 'threads': threads,
                           'prefault_wait_s': round(prefault_s, 2),
                           **stats_ms(times), **recalls(found, exact),
                           'index_file_bytes_per_entry': round(entry['bytes'] / count, 2),
                           'anon_kib_added_in_bench': after['RssAnon'] - before['RssAnon'],
                           'fresh_load_s': round(fresh['load_s'], 3),
                           'fresh_anon_bytes_per_entry': round(
                               fresh['anon_kib'] * 1024 / count, 1),
                           'fresh_mapped_bytes_per_entry': round(
                               fresh['file_kib'] * 1024 / count, 1),
                           'build_s': entry['build_s'], 'load_s': round(load_s, 3),
                           'load_avg_1m_start': load_start,
                           'load_avg_1m': round(os.getloadavg()[0], 2)}
                    if flat_p50:
                        row['flat_p50_over_p50'] = round(flat_p50 / row['p50_ms'], 2)
                    if old_cpu_p50:
                        row['old_cpu_p50_over_cpu_p50'] = round(old_cpu_p50 / row['cpu_p50_ms'],
                                                                2)
                    print(json.dumps(row), flush=True)
    if args.funnel:
        bench_funnel(args, mapdb, queries, base)
    if not (args.keep or args.reuse):
        shutil.rmtree(root, ignore_errors=True)


def bench_old_path(args: argparse.Namespace, root: Path, saved, queries: np.ndarray,
                   exact: np.ndarray, setting: dict) -> float:
    """Time the re-rank as it was (``OldRerank``) on a fresh, unprefaulted mapping of the store.

    Returns:
        its median CPU ms per query, the baseline of the product rows that follow.
    """
    load_start = round(os.getloadavg()[0], 2)
    store = MapDatabase.load(root).store            # its own mmap: no page mapped yet
    saved.threads = 1
    times, found = single_queries(OldRerank(saved, store, args.prefix, setting['shortlist_k']),
                                  queries, 10, warmup=0)
    ms = stats_ms(times)
    print(json.dumps({**setting, 'path': 'old re-rank (baseline, fresh mapping)', 'threads': 1,
                      **ms, **recalls(found, exact), 'load_avg_1m_start': load_start,
                      'load_avg_1m': round(os.getloadavg()[0], 2)}), flush=True)
    return ms['cpu_p50_ms']


def bench_funnel(args: argparse.Namespace, mapdb: MapDatabase, queries: np.ndarray,
                 base: dict) -> None:
    """Flat shortlist at a small prefix, exact re-rank at the full one, vs exact full search."""
    queries = queries[:LATENCY_QUERIES]
    _, exact = exact_topk(mapdb.store, queries, args.funnel_dim, 10)
    full = PrefixIndex(mapdb.store, args.funnel_dim)
    times, found = single_queries(full, queries, 10)
    full_ms = stats_ms(times)
    del full
    print(json.dumps({**base, 'index': f'flat@{args.funnel_dim} (exact, baseline)', **full_ms,
                      **recalls(found, exact)}), flush=True)
    shortlist = PrefixIndex(mapdb.store, args.shortlist_dim)
    for shortlist_k in args.funnel_ks:
        funnel = FunnelIndex(shortlist, mapdb.store, args.funnel_dim, shortlist_k)
        times, found = single_queries(funnel, queries, 10)
        ms = stats_ms(times)
        print(json.dumps({**base, 'index': funnel.index_type, 'shortlist_k': shortlist_k, **ms,
                          **recalls(found, exact),
                          'latency_over_exact': round(ms['p50_ms'] / full_ms['p50_ms'], 3)}),
              flush=True)


def main() -> None:
    """Parse flags and run every size."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1_000_000])
    parser.add_argument('--dim', type=int, default=256)
    parser.add_argument('--prefix', type=int, default=128)
    parser.add_argument('--queries', type=int, default=1000)
    parser.add_argument('--recipes', nargs='*', default=['ivfpq', 'opqpq', 'ivfsq8'],
                        help='index recipes (none: only write the map and the ground truth)')
    parser.add_argument('--nprobes', type=int, nargs='+', default=[16, 32, 64])
    parser.add_argument('--shortlist-ks', type=int, nargs='+', default=[50, 100, 200])
    parser.add_argument('--funnel', action='store_true', help='also measure the funnel')
    parser.add_argument('--shortlist-dim', type=int, default=32)
    parser.add_argument('--funnel-dim', type=int, default=256)
    parser.add_argument('--funnel-ks', type=int, nargs='+', default=[100, 200, 400, 800])
    parser.add_argument('--no-flat', action='store_true',
                        help='skip the exact flat baseline (4 * prefix bytes per entry of RAM)')
    parser.add_argument('--workdir', default='/tmp/aesvc_bench_scale')
    parser.add_argument('--keep', action='store_true', help='keep the map directories')
    parser.add_argument('--reuse', action='store_true',
                        help='keep the maps, and reuse a map, ground truth and saved index '
                             'that --workdir already holds for these settings')
    parser.add_argument('--flat-queries', type=int, default=LATENCY_QUERIES,
                        help='single queries timed on the exact flat baseline')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, nargs='+', default=[0],
                        help='search.threads values to time (0: one thread per single query)')
    parser.add_argument('--old-path', action='store_true',
                        help="also time the re-rank as it was before issue 16's third pass "
                             '(np.unique, fancy indexing, numpy cast, no prefault): baseline')
    parser.add_argument('--stages', action='store_true',
                        help='also print a per-stage CPU and page-fault breakdown')
    parser.add_argument('--stage-queries', type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    info = {**provenance(), 'load_avg_1m': round(os.getloadavg()[0], 2)}
    for count in args.sizes:
        bench_size(args, count, info)


if __name__ == '__main__':
    main()
