"""FunnelIndex: a short-prefix shortlist re-ranked exactly, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import held_out_queries, PrefixIndex


def _brute_force(database, queries, dim, k):
    xb, xq = l2_prefix(database, dim).astype(np.float64), l2_prefix(queries, dim)
    scores = xq.astype(np.float64) @ xb.T
    order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_constructed_case_top1_is_exact():
    # at prefix 2 rows 0-2 beat row 3 (the exact best at prefix 4); the shortlist of 4 still
    # holds row 3, so the funnel's re-rank at prefix 4 puts it first
    database = np.array([[1.0, 0.00, 0.0, -1.0],
                         [1.0, 0.02, -1.0, 0.0],
                         [1.0, 0.04, 0.0, 1.0],
                         [0.9, 0.10, 0.6, 0.6],
                         [0.0, 1.00, 0.0, 0.0],
                         [-1.0, 0.0, 0.0, 0.0]], np.float32)
    query = np.array([[1.0, 0.0, 0.5, 0.5]], np.float32)
    shortlist = PrefixIndex(database, 2)
    assert shortlist.search(query, 1)[1][0, 0] != 3         # the short prefix alone is wrong
    funnel = FunnelIndex(shortlist, database, 4, shortlist_k=4)
    scores, indices = funnel.search(query, 2)
    ref_scores, ref_indices = _brute_force(database, query, 4, 2)
    assert indices[0, 0] == 3 == ref_indices[0, 0]
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    # a shortlist of 1 cannot recover it: the funnel is only as good as its shortlist
    assert FunnelIndex(shortlist, database, 4, shortlist_k=1).search(query, 1)[1][0, 0] != 3


@pytest.mark.parametrize('dtype', [np.float32, np.float16])
def test_matches_brute_force_on_a_small_map(dtype):
    rng = np.random.default_rng(3)
    # leading dimensions carry more variance, as in an (SS)2D embedding
    scale = 1.0 / np.sqrt(np.arange(1, 65))
    database = (rng.standard_normal((2000, 64)) * scale).astype(dtype)
    queries = held_out_queries(l2_prefix(database, 64), 50, seed=1)
    # a shortlist as long as the map: exactly brute force at the full prefix
    funnel = FunnelIndex(PrefixIndex(database, 8), database, 64, shortlist_k=2000)
    scores, indices = funnel.search(queries, 10)
    ref_scores, ref_indices = _brute_force(database, queries, 64, 10)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    # a short shortlist: exact order among its own candidates, high top-1 agreement
    short = FunnelIndex(PrefixIndex(database, 16), database, 64, shortlist_k=200)
    scores, indices = short.search(queries, 10)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert np.mean(indices[:, 0] == ref_indices[:, 0]) >= 0.9


def test_mismatched_store_is_refused():
    database = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    with pytest.raises(SearchError, match='50 rows'):
        FunnelIndex(PrefixIndex(database, 4), database[:40], 8, 10)
    with pytest.raises(SearchError, match='outside 1..8'):
        FunnelIndex(PrefixIndex(database, 4), database, 9, 10)
