"""nprobe chosen by measurement: the smallest ladder value whose search reaches the target."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.cli import main
from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import held_out_queries
from aesvc_vpr.index.saved import SavedIndex
from aesvc_vpr.index.tuning import exact_topk, NPROBE_LADDER, recalls_vs_exact, tune_nprobe
from aesvc_vpr.retrieval.map_index import (index_figures, index_map, load_saved_index,
                                           saved_index_entry)
from aesvc_vpr.retrieval.mapdb import MapDatabase

DIM = PatchGridBackbone.dim


def _rows(n, seed=0):
    """Places seen 5 times each, leading dimensions strongest (like an ordered embedding)."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(np.arange(1, DIM + 1))
    places = rng.standard_normal((n // 5, DIM)) * scale
    return (np.repeat(places, 5, axis=0)
            + 0.3 * rng.standard_normal((n, DIM)) * scale).astype(np.float16)


@pytest.fixture(scope='module')
def store():
    return _rows(20000)


def test_exact_topk_over_blocks_is_brute_force(store, monkeypatch):
    import aesvc_vpr.index.tuning as tuning
    monkeypatch.setattr(tuning, 'EXACT_BLOCK', 3000)       # several blocks and a short last one
    queries = held_out_queries(l2_prefix(store[:500], DIM), 30, seed=1)
    scores, rows = exact_topk(store, queries, 24, 10)
    full = l2_prefix(queries, 24) @ l2_prefix(store, 24).T
    np.testing.assert_array_equal(rows, np.argsort(-full, axis=1, kind='stable')[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(full, rows, 1), atol=1e-5)


def test_the_chosen_nprobe_is_the_smallest_that_reaches_the_target(store):
    index = SavedIndex.build(store, 24, 'ivfpqfs', nprobe=1)
    tuning = tune_nprobe(index, store, shortlist_k=100, target=0.95, queries=150, seed=3)
    assert tuning.reached and index.nprobe == tuning.nprobe
    assert tuning.recall_at_1 >= 0.95 and tuning.recall_at_10 >= 0.95
    # measured again, independently: the chosen value reaches the target, the one below not
    rows = np.sort(np.random.default_rng(3).choice(len(store), 150, replace=False))
    queries = held_out_queries(l2_prefix(np.asarray(store[rows]), 24), 150, 3)
    _, exact = exact_topk(store, queries, 24, 10)
    funnel = FunnelIndex(index, store, 24, 100)
    below = [p for p in NPROBE_LADDER if p < tuning.nprobe]
    assert below, 'the target was reached at the first rung: the test shows nothing'
    for nprobe, reaches in ((below[-1], False), (tuning.nprobe, True)):
        index.set_nprobe(nprobe)
        at_1, at_10 = recalls_vs_exact(funnel.search(queries, 10)[1], exact)
        assert (at_1 >= 0.95 and at_10 >= 0.95) == reaches, (nprobe, at_1, at_10)


def test_an_unreachable_target_is_reported_at_the_largest_nprobe(store):
    index = SavedIndex.build(store, 24, 'ivfpqfs', nprobe=1)
    tuning = tune_nprobe(index, store, shortlist_k=10, target=1.0, queries=100)
    assert not tuning.reached
    assert index.nprobe == tuning.nprobe == index.nlist
    assert tuning.recall_at_10 < 1.0
    with pytest.raises(SearchError, match=r'recall target must be in \(0, 1\]'):
        tune_nprobe(index, store, shortlist_k=10, target=1.5)


def test_index_map_measures_nprobe_by_default_and_the_node_loads_it(tmp_path, capsys):
    root = tmp_path / 'map'
    backbone = PatchGridBackbone()
    MapDatabase.write(root, _rows(8000, seed=2), np.zeros((8000, 2)), '17T',
                      backbone_name=backbone.name, backbone_fingerprint=backbone.fingerprint)
    assert main(['index-map', str(root), '--prefix', '32', '--shortlist-k', '50']) == 0
    entry = json.loads((root / 'map.json').read_text())['files']['index']
    tuning = entry['tuning']
    assert tuning['reached'] and tuning['shortlist_k'] == 50 and tuning['target'] == 0.95
    assert tuning['recall_at_1'] >= 0.95 and tuning['recall_at_10'] >= 0.95
    assert entry['nprobe'] == tuning['nprobe'] in NPROBE_LADDER
    assert load_saved_index(MapDatabase.load(root), 32).nprobe == entry['nprobe']
    out = capsys.readouterr().out
    assert f'nprobe {entry["nprobe"]}' in out and 'Recall@10' in out
    # a fixed nprobe is kept as given, with no measurement
    assert main(['index-map', str(root), '--prefix', '32', '--nprobe', '7']) == 0
    entry = json.loads((root / 'map.json').read_text())['files']['index']
    assert entry['nprobe'] == 7 and 'tuning' not in entry
    with pytest.raises(SystemExit):
        main(['index-map', str(root), '--prefix', '32', '--nprobe', 'some'])
    assert "must be 'auto' or an integer >= 1, got 'some'" in capsys.readouterr().err


def test_index_figures_say_when_the_node_searches_a_shorter_shortlist(tmp_path):
    root = tmp_path / 'map'
    backbone = PatchGridBackbone()
    mapdb = MapDatabase.write(root, _rows(8000, seed=4), np.zeros((8000, 2)), '17T',
                              backbone_name=backbone.name,
                              backbone_fingerprint=backbone.fingerprint)
    assert index_figures(mapdb, 400) == {}
    mapdb = index_map(root, 32, nprobe=None, shortlist_k=50)
    tuning = saved_index_entry(mapdb)['tuning']
    figures = index_figures(mapdb, 50)
    assert figures['index_nprobe'] == tuning['nprobe']
    assert figures['index_recall'] == (f'R@1 {tuning["recall_at_1"]}, R@10 '
                                       f'{tuning["recall_at_10"]} vs exact at shortlist 50')
    assert index_figures(mapdb, 20)['index_recall'].endswith('(searching with 20: lower)')
