"""PrefixIndex against a numpy argsort reference, for single queries and batches."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import PrefixIndex, TORCH_BATCH_MIN


def _reference(database, queries, dim, k):
    xb = database[:, :dim] / np.linalg.norm(database[:, :dim], axis=1, keepdims=True)
    xq = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
    scores = xq.astype(np.float64) @ xb.T.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture(scope='module')
def data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((3000, 96)).astype(np.float32), \
        rng.standard_normal((2 * TORCH_BATCH_MIN, 96)).astype(np.float32)


@pytest.mark.parametrize('dim', [1, 8, 32, 96])
@pytest.mark.parametrize('batch', [1, 5, 2 * TORCH_BATCH_MIN])   # FAISS 1 thread, FAISS, torch
def test_flat_equals_numpy_argsort(data, dim, batch):
    database, queries = data
    index = PrefixIndex(database, dim)
    scores, indices = index.search(queries[:batch], 10)
    ref_scores, ref_indices = _reference(database, queries[:batch], dim, 10)
    assert indices.dtype == np.int64 and scores.dtype == np.float32
    assert scores.shape == indices.shape == (batch, 10)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    if dim > 1:      # at dim 1 every score is +-1: ties everywhere, only scores are comparable
        np.testing.assert_array_equal(indices, ref_indices)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_queries_may_be_full_size_or_longer_prefix(data):
    database, queries = data
    index = PrefixIndex(database, 16)
    _, a = index.search(queries[:3], 5)
    _, b = index.search(queries[:3, :16].copy(), 5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(SearchError, match='shorter than the prefix 16'):
        index.search(queries[:3, :8], 5)


def test_k_is_capped_at_map_size():
    database = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    scores, indices = PrefixIndex(database, 8).search(database[:1], 10)
    assert indices.shape == (1, 4) and sorted(indices[0]) == [0, 1, 2, 3]
    assert indices[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0)


def test_nbytes_scales_with_prefix(data):
    database, _ = data
    small, large = PrefixIndex(database, 16), PrefixIndex(database, 64)
    assert small.nbytes == 3000 * 16 * 4 and large.nbytes == 4 * small.nbytes


@pytest.mark.parametrize('index_type', ['ivf', 'hnsw'])
def test_approximate_indexes_report_recall(data, index_type):
    database, queries = data
    index = PrefixIndex(database, 32, index_type)
    assert 0.5 < index.recall_vs_exact <= 1.0
    assert index.nbytes > 3000 * 32 * 4
    scores, indices = index.search(queries[:4], 5)
    assert indices.shape == (4, 5) and (indices >= 0).all()
    ref_scores, _ = _reference(database, queries[:4], 32, 5)
    assert (scores <= ref_scores[:, :1] + 1e-5).all()     # never better than the exact best


def test_bad_arguments(data):
    database, _ = data
    with pytest.raises(SearchError, match='index_type'):
        PrefixIndex(database, 8, 'lsh')
    with pytest.raises(SearchError, match=r'outside 1\.\.96'):
        PrefixIndex(database, 97)
    with pytest.raises(SearchError, match='shape'):
        PrefixIndex(database[:0], 8, 'hnsw')
    empty = PrefixIndex(database[:0], 8)      # a flat index may start empty and grow
    scores, indices = empty.search(database[:2], 5)
    assert empty.count == 0 and scores.shape == indices.shape == (2, 0)


def test_flat_index_grows_and_searches_its_first_rows(data):
    database, queries = data
    index = PrefixIndex(database[:0], 16)
    for start in range(0, 60, 6):
        index.add(database[start:start + 6])
    assert index.count == 60
    full = PrefixIndex(database[:60], 16)
    np.testing.assert_array_equal(index.search(queries, 5)[1], full.search(queries, 5)[1])
    xb, xq = l2_prefix(database[:25], 16), l2_prefix(queries, 16)
    expected = np.argsort(-(xq @ xb.T), axis=1, kind='stable')[:, :5]
    for batch in (queries[:1], queries):      # faiss path (one query) and torch path (a batch)
        _, found = index.search(batch, 5, limit=25)
        np.testing.assert_array_equal(found, expected[:len(batch)])
    with pytest.raises(SearchError, match='only a flat index'):
        PrefixIndex(database, 16, 'hnsw').add(database[:1])
