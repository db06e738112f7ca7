"""The fast exact re-rank gives bit-identical results to the plain numpy path it replaced."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aesvc_vpr.common.prefault import populate
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import held_out_queries, PrefixIndex
from aesvc_vpr.index.rerank import exact_scores, prefix_rows, sorted_rows
from aesvc_vpr.index.saved import SavedIndex


@pytest.fixture(scope='module')
def mapped_store(tmp_path_factory):
    """Return (3000, 48) float16 rows of decreasing variance, mapped read-only as a map is."""
    rng = np.random.default_rng(11)
    rows = (rng.standard_normal((3000, 48)) / np.sqrt(np.arange(1, 49))).astype(np.float16)
    path = tmp_path_factory.mktemp('store') / 'raw.npy'
    np.save(path, rows)
    return np.load(path, mmap_mode='r')


def _old_rerank(store, shortlist, query_unit, dim, k):
    """Re-rank as FunnelIndex did before: np.unique, fancy indexing, numpy's cast."""
    rows = np.unique(shortlist[shortlist >= 0])
    exact = l2_prefix(store[rows], dim) @ query_unit
    top = np.argsort(-exact, kind='stable')[:k]
    return exact[top], rows[top]


def test_sorted_rows_is_unique_of_the_valid_rows():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = rng.integers(-1, 50, rng.integers(0, 40))
        np.testing.assert_array_equal(sorted_rows(rows), np.unique(rows[rows >= 0]))


@pytest.mark.parametrize('dtype', [np.float16, np.float32])
def test_prefix_rows_bit_identical_to_l2_prefix(mapped_store, dtype):
    store = mapped_store if dtype == np.float16 else np.asarray(mapped_store, np.float32)
    rows = np.random.default_rng(1).choice(len(store), 400, replace=False)
    for dim in (1, 17, 48):
        np.testing.assert_array_equal(prefix_rows(store, rows, dim), l2_prefix(store[rows], dim))
    query = l2_prefix(store[5:6].astype(np.float32) + 0.01, 17)[0]
    np.testing.assert_array_equal(exact_scores(store, np.sort(rows), query),
                                  l2_prefix(store[np.sort(rows)], 17) @ query)


def test_funnel_results_identical_to_the_old_rerank(mapped_store):
    shortlist_index = PrefixIndex(mapped_store, 8)
    funnel = FunnelIndex(shortlist_index, mapped_store, 40, shortlist_k=300)
    queries = held_out_queries(l2_prefix(mapped_store, 48), 30, seed=4)
    scores, indices = funnel.search(queries, 10)
    _, shortlists = shortlist_index.search(queries, 300)
    for q, shortlist in enumerate(shortlists):
        ref_scores, ref_rows = _old_rerank(mapped_store, shortlist,
                                           l2_prefix(queries[q:q + 1], 40)[0], 40, 10)
        np.testing.assert_array_equal(indices[q], ref_rows)
        np.testing.assert_array_equal(scores[q], ref_scores)
    funnel.prefault_thread.join()
    assert FunnelIndex(shortlist_index, np.asarray(mapped_store), 40, 10).prefault_thread is None


def _resident_kib(array: np.ndarray) -> int:
    """Resident KiB of the mapping that holds ``array`` (its 'Rss' in /proc/self/smaps)."""
    address, inside = array.ctypes.data, False
    with open('/proc/self/smaps') as f:
        for line in f:
            head = line.split()[0]
            if '-' in head and ':' not in head:
                low, high = (int(part, 16) for part in head.split('-'))
                inside = low <= address < high
            elif inside and line.startswith('Rss:'):
                return int(line.split()[1])
    raise AssertionError('mapping not found')


@pytest.mark.skipif(tuple(int(p) for p in os.uname().release.split('.')[:2]) < (5, 14),
                    reason='MADV_POPULATE_READ needs Linux >= 5.14')
def test_populate_maps_the_pages_ahead(tmp_path):
    path = tmp_path / 'big.npy'
    np.save(path, np.arange(4 << 20, dtype=np.float32))         # 16 MiB
    mapped = np.load(path, mmap_mode='r')
    assert _resident_kib(mapped) < 1024                          # nothing touched yet
    assert populate(mapped)
    assert _resident_kib(mapped) >= 16 * 1024 - 4                # every page mapped, unread
    assert not populate(np.zeros(10))                            # not a mapping: nothing done


def _same_shortlist(first, second) -> bool:
    """Assert two approximate top-k lists agree; return whether they hold the same rows.

    Fast-scan scores are quantised, so rows often tie. Splitting one query's lists over threads
    (a reservoir per thread, then merged) keeps the same scores, but which of the rows tied at
    the last score stay in, and the order of tied rows, depend on the split.
    """
    (scores_a, rows_a), (scores_b, rows_b) = first, second
    np.testing.assert_array_equal(scores_b, scores_a)
    last = scores_a[0, -1]
    above_a = sorted(zip(scores_a[0][scores_a[0] > last], rows_a[0][scores_a[0] > last]))
    above_b = sorted(zip(scores_b[0][scores_b[0] > last], rows_b[0][scores_b[0] > last]))
    assert above_b == above_a
    return set(rows_a[0]) == set(rows_b[0])


class _Recorded:
    """A first stage that keeps the shortlist of its last search, for the test to compare."""

    def __init__(self, index: SavedIndex) -> None:
        self.index, self.last = index, None
        self.prefix_dim, self.index_type = index.prefix_dim, index.index_type
        self.count, self.nbytes = index.count, index.nbytes

    def search(self, queries_full, k):
        self.last = self.index.search(queries_full, k)
        return self.last


def test_saved_index_two_threads_one_query_same_results(mapped_store):
    saved = SavedIndex.build(mapped_store, 32, 'ivfpqfs', nprobe=16)
    recorded = _Recorded(saved)
    funnel = FunnelIndex(recorded, mapped_store, 32, shortlist_k=100)
    queries = held_out_queries(l2_prefix(mapped_store, 48), 40, seed=6)
    results = {}
    for threads in (0, 2):
        saved.threads = threads
        for q, query in enumerate(queries):
            final = funnel.search(query[None], 10)[1][0]
            results[threads, q] = recorded.last, final
    same_rows = 0
    for q in range(len(queries)):
        (one, final_one), (two, final_two) = results[0, q], results[2, q]
        if _same_shortlist(one, two):
            same_rows += 1      # the exact re-rank of the same rows is the same
            np.testing.assert_array_equal(final_two, final_one)
    assert same_rows > 0
    saved.threads = 0
    # a batch after single queries uses FAISS's own choice again, with the same shortlists
    batch_scores, batch_rows = saved.search(queries, 100)
    for q in range(len(queries)):
        _same_shortlist(results[0, q][0], (batch_scores[q:q + 1], batch_rows[q:q + 1]))
