"""SavedIndex: compressed recipes re-ranked exactly reach exact search; files are memory-mapped."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import held_out_queries, PrefixIndex
from aesvc_vpr.index.saved import factory_string, SavedIndex


@pytest.fixture(scope='module')
def database():
    rng = np.random.default_rng(5)
    places = rng.standard_normal((800, 32)) / np.sqrt(np.arange(1, 33))
    rows = np.repeat(places, 5, axis=0) + 0.2 * rng.standard_normal((4000, 32)) / np.sqrt(
        np.arange(1, 33))
    return rows.astype(np.float16)


def test_factory_strings():
    assert factory_string('ivfpq', 10_000_000, 128) == ('IVF8192_HNSW32,PQ32', 8192)
    assert factory_string('opqpq', 1_000_000, 128) == ('OPQ32,IVF2048_HNSW32,PQ32', 2048)
    assert factory_string('ivfsq8', 4000, 32) == ('IVF64,SQ8', 64)
    assert factory_string('ivfpqfs', 10_000_000, 128) == ('IVF8192_HNSW32,PQ64x4fs', 8192)
    with pytest.raises(SearchError, match='even prefix'):
        factory_string('ivfpqfs', 10_000, 33)
    with pytest.raises(SearchError, match='recipe must be one of'):
        factory_string('lsh', 100, 8)


@pytest.mark.parametrize('recipe', ['ivfpqfs', 'ivfpq', 'ivfsq8'])
def test_saved_mapped_and_reranked_agrees_with_exact(tmp_path, database, recipe):
    built = SavedIndex.build(database, 16, recipe, nprobe=16)
    path = tmp_path / 'index.faiss'
    built.save(path)
    loaded = SavedIndex.load(path, 16, recipe, nprobe=16)
    invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(loaded._index).invlists)
    if recipe == 'ivfpqfs':
        # FAISS reads fast-scan's packed block lists into memory even with IO_FLAG_MMAP: the
        # resident index is its 4-bit codes (8 bytes at prefix 16) + an 8-byte id per entry
        assert isinstance(invlists, faiss.BlockInvertedLists)
        assert loaded.nbytes <= 64 * len(database) and path.stat().st_size <= 64 * len(database)
    else:
        assert isinstance(invlists, faiss.OnDiskInvertedLists)
    queries = held_out_queries(l2_prefix(database, 32), 100, seed=2)
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], built.search(queries, 5)[1])
    funnel = FunnelIndex(loaded, database, 16, shortlist_k=50)
    _, found = funnel.search(queries, 10)
    _, exact = PrefixIndex(database, 16).search(queries, 10)
    recall10 = np.mean([len(np.intersect1d(f, e)) / 10 for f, e in zip(found, exact)])
    assert np.mean(found[:, 0] == exact[:, 0]) >= 0.95 and recall10 >= 0.95
    assert loaded.nbytes < database[:, :16].astype(np.float32).nbytes


def test_hnsw_coarse_quantizer_is_flat_after_the_build(tmp_path):
    # 1024 lists and up are assigned through an HNSW graph, searched with a flat scan
    rng = np.random.default_rng(3)
    rows = (rng.standard_normal((140_000, 16)) / np.sqrt(np.arange(1, 17))).astype(np.float16)
    built = SavedIndex.build(rows, 16, 'ivfpqfs', nprobe=64)
    assert factory_string('ivfpqfs', len(rows), 16)[0] == 'IVF1024_HNSW32,PQ8x4fs'
    path = tmp_path / 'index.faiss'
    built.save(path)
    loaded = SavedIndex.load(path, 16, 'ivfpqfs', nprobe=64)
    ivf = faiss.extract_index_ivf(loaded._index)
    quantizer = faiss.downcast_index(ivf.quantizer)
    assert isinstance(quantizer, faiss.IndexFlatL2) and quantizer.ntotal == ivf.nlist == 1024
    queries = held_out_queries(l2_prefix(rows, 16), 50, seed=4)
    _, found = FunnelIndex(loaded, rows, 16, shortlist_k=100).search(queries, 1)
    _, exact = PrefixIndex(rows, 16).search(queries, 1)
    assert np.mean(found[:, 0] == exact[:, 0]) >= 0.95


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / 'index.faiss'
    path.write_bytes(b'not an index at all')
    with pytest.raises(SearchError, match='not a readable FAISS index'):
        SavedIndex.load(path, 16, 'ivfpq', 8)


def test_truncated_fast_scan_file_is_refused(tmp_path, database):
    path = tmp_path / 'index.faiss'
    SavedIndex.build(database, 16, 'ivfpqfs', nprobe=8).save(path)
    path.write_bytes(path.read_bytes()[:path.stat().st_size * 2 // 3])
    with pytest.raises(SearchError, match='not a readable FAISS index'):
        SavedIndex.load(path, 16, 'ivfpqfs', 8)


def test_too_few_rows_to_train(database):
    with pytest.raises(SearchError, match='needs at least'):
        SavedIndex.build(database[:100], 16, 'ivfpq')


def test_recall_vs_exact_uses_held_out_queries(database):
    index = PrefixIndex(database, 16, 'hnsw')
    assert 0.0 < index.recall_vs_exact <= 1.0
    xb = l2_prefix(database, 16)
    queries = held_out_queries(xb, 50)
    # not database rows: none is found at cosine 1
    assert (queries @ xb.T).max() < 0.999
    assert index.measure_recall(queries, database) == pytest.approx(
        index._recall_vs_exact(queries, xb))
