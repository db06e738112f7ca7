"""A map's saved index, memory-mapped arrays, the quick and full checks, funnel search.

The saved index is committed into map.json, memory-mapped, and refused when it does not fit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.cli import main
from aesvc_vpr.common.fileio import sample_sha256_file, sha256_file
from aesvc_vpr.config import MatchConfig, SearchConfig
from aesvc_vpr.errors import MapError
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localizer
from aesvc_vpr.retrieval.map_index import load_saved_index
from aesvc_vpr.retrieval.mapdb import MapDatabase

ROWS = 4000
DIM = PatchGridBackbone.dim


def _raw(n, seed=0):
    rng = np.random.default_rng(seed)
    # 800 places seen 5 times, leading dimensions strongest (like an ordered embedding)
    scale = 1.0 / np.sqrt(np.arange(1, DIM + 1))
    places = rng.standard_normal((n // 5, DIM)) * scale
    return np.repeat(places, 5, axis=0) + 0.3 * rng.standard_normal((n, DIM)) * scale


def _write(root, n=ROWS, seed=0):
    backbone = PatchGridBackbone()
    return MapDatabase.write(root, _raw(n, seed), np.zeros((n, 2)), '17T',
                             backbone_name=backbone.name,
                             backbone_fingerprint=backbone.fingerprint)


@pytest.fixture(scope='module')
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp('indexed') / 'map'
    _write(root)
    assert main(['index-map', str(root), '--prefix', '32', '--nprobe', '16']) == 0
    return root


def _meta(root):
    return json.loads((root / 'map.json').read_text())


def _set_meta(root, meta):
    (root / 'map.json').write_text(json.dumps(meta))


def _copy(src, dst):
    dst.mkdir()
    for path in src.iterdir():
        if path.is_file() and not path.name.startswith('.'):
            (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_saved_index_is_committed_mapped_and_searched(indexed):
    entry = _meta(indexed)['files']['index']
    # the default recipe: 4-bit fast-scan PQ
    assert entry['prefix_dim'] == 32 and entry['count'] == ROWS and entry['recipe'] == 'ivfpqfs'
    assert entry['sha256'] == sha256_file(indexed / entry['name'])
    mapdb = MapDatabase.load(indexed)
    assert isinstance(mapdb.raw, np.memmap)            # mapped, not read
    loc = Localizer(Encoder(PatchGridBackbone()), mapdb,
                    SearchConfig(prefix_dim=32, index_type='saved', shortlist_k=50),
                    MatchConfig(top_k=5))
    exact = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=32),
                      MatchConfig(top_k=5))
    assert isinstance(loc._index, FunnelIndex) and loc._index.index_type.startswith('funnel')
    queries = _raw(ROWS, seed=0)[::40] + 0.1 * np.random.default_rng(9).standard_normal(
        (ROWS // 40, DIM)) / np.sqrt(np.arange(1, DIM + 1))
    found = [r.matches[0].index for r in loc.search(queries, range(len(queries)))]
    truth = [r.matches[0].index for r in exact.search(queries, range(len(queries)))]
    assert np.mean(np.equal(found, truth)) >= 0.95
    with pytest.raises(MapError, match=r'no saved index for prefix 64.*index-map .* --prefix 64'):
        loc.set_prefix_dim(64)
    assert loc.prefix_dim == 32          # the refused change left the working index


def test_corrupt_index_is_refused_at_load(indexed, tmp_path):
    root = _copy(indexed, tmp_path / 'map')
    path = root / _meta(root)['files']['index']['name']
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(MapError, match=r'index-\w+\.faiss: sha256 differs.*aesvc-vpr index-map'):
        MapDatabase.load(root)


def test_unreadable_or_mismatched_index_is_refused(indexed, tmp_path):
    root = _copy(indexed, tmp_path / 'map')
    meta = _meta(root)
    entry = meta['files']['index']
    # a file that is no FAISS index, with digests that match it: the reader refuses it
    path = root / entry['name']
    path.write_bytes(b'garbage' * 100)
    entry.update(sha256=sha256_file(path), bytes=path.stat().st_size,
                 sample_sha256=sample_sha256_file(path))
    _set_meta(root, meta)
    with pytest.raises(MapError, match=r'not a readable FAISS index.*index-map .* --prefix 32'):
        load_saved_index(MapDatabase.load(root), 32)
    # an index built from other embeddings than the map's
    (root / entry['name']).write_bytes((indexed / entry['name']).read_bytes())
    original = _meta(indexed)['files']['index']
    meta['files']['index'] = {**original, 'source_sha256': '0' * 64}
    _set_meta(root, meta)
    with pytest.raises(MapError, match='built from other embeddings.*index-map'):
        load_saved_index(MapDatabase.load(root), 32)


def test_an_index_of_the_previous_default_recipe_still_loads(indexed, tmp_path):
    root = _copy(indexed, tmp_path / 'map')
    assert main(['index-map', str(root), '--prefix', '32', '--recipe', 'ivfpq',
                 '--nprobe', '16']) == 0
    index = load_saved_index(MapDatabase.load(root), 32)
    assert index.index_type == 'ivfpq' and index.count == ROWS and index.nprobe == 16


def test_rewritten_map_drops_its_index(indexed, tmp_path):
    root = _copy(indexed, tmp_path / 'map')
    name = _meta(root)['files']['index']['name']
    _write(root, seed=1)
    assert 'index' not in _meta(root)['files'] and not (root / name).exists()


def test_quick_check_at_load_and_full_check_in_verify_map(tmp_path, capsys):
    root = tmp_path / 'big'
    _write(root, n=12_000)                    # raw file 9.2 MB: sampled, not hashed whole
    path = root / _meta(root)['files']['raw']['name']
    assert path.stat().st_size > 8 << 20
    assert main(['verify-map', str(root)]) == 0
    assert 'ok' in capsys.readouterr().out
    with open(path, 'r+b') as f:              # a byte between two sampled blocks
        f.seek((64 << 10) + 4096)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    MapDatabase.load(root)                    # the quick check does not read that byte
    assert main(['verify-map', str(root)]) == 1
    assert 'sha256 differs from map.json' in capsys.readouterr().err
    with open(path, 'ab') as f:               # a grown file fails the quick check too
        f.write(b'\0')
    with pytest.raises(MapError, match='bytes but map.json says'):
        MapDatabase.load(root)


def test_funnel_in_the_localizer_matches_exact_search(indexed):
    mapdb = MapDatabase.load(indexed)
    queries = _raw(ROWS, seed=0)[::100]
    exact = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=256),
                      MatchConfig(top_k=5))
    loc = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=256),
                    MatchConfig(top_k=5))
    loc.set_search(SearchConfig(prefix_dim=256, shortlist_dim=32, shortlist_k=ROWS))
    assert loc._index.index_type == 'funnel(flat@32)'
    for a, b in zip(loc.search(queries, range(len(queries))),
                    exact.search(queries, range(len(queries)))):
        assert [m.index for m in a.matches] == [m.index for m in b.matches]
        np.testing.assert_allclose([m.score for m in a.matches], [m.score for m in b.matches],
                                   atol=1e-5)
