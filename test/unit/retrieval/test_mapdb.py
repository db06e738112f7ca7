"""MapDatabase: round trip, and refusal of corrupt, mismatched or foreign maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.common.fileio import sample_sha256_file, sha256_file
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import MapError
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.head.training import train_head
from aesvc_vpr.retrieval.mapdb import MapDatabase


def _write(root, n=40, dim=PatchGridBackbone.dim, projector=None, name=None, fingerprint=None):
    rng = np.random.default_rng(0)
    backbone = PatchGridBackbone()
    return MapDatabase.write(
        root, rng.standard_normal((n, dim)), rng.uniform(0, 500, (n, 2)), '17T',
        yaw=rng.uniform(-3, 3, n), stamps_ns=np.arange(n) * 10,
        paths=[f'img{i}.jpg' for i in range(n)],
        backbone_name=name or backbone.name,
        backbone_fingerprint=fingerprint or backbone.fingerprint, projector=projector,
        failed_images=[{'row': 99, 'path': 'bad.jpg', 'reason': 'cannot decode'}])


@pytest.fixture(scope='module')
def projector(tmp_path_factory):
    raw = np.random.default_rng(1).standard_normal((64, PatchGridBackbone.dim))
    path = tmp_path_factory.mktemp('head') / 'head.safetensors'
    train_head(raw.astype(np.float32), PatchGridBackbone.name,
               HeadConfig(latent_dim=16, prefix_sizes=(4, 8, 16)),
               TrainConfig(epochs=1, batch_size=16, patience=1), path, progress=False)
    return Projector.load(path)


def test_round_trip(tmp_path):
    written = _write(tmp_path / 'map')
    loaded = MapDatabase.load(tmp_path / 'map', PatchGridBackbone())
    assert loaded.count == 40 and loaded.utm_zone == '17T' and loaded.head_fingerprint == ''
    assert loaded.raw.dtype == np.float16 and loaded.raw.shape == (40, PatchGridBackbone.dim)
    np.testing.assert_array_equal(loaded.raw, written.raw)
    np.testing.assert_array_equal(loaded.embeddings, written.raw.astype(np.float32))
    assert loaded.embeddings.dtype == np.float32
    np.testing.assert_array_equal(loaded.utm, written.utm)
    np.testing.assert_array_equal(loaded.yaw, written.yaw)
    np.testing.assert_array_equal(loaded.stamps_ns, np.arange(40) * 10)
    np.testing.assert_array_equal(loaded.ids, np.arange(40))
    assert loaded.paths[3] == 'img3.jpg'
    assert loaded.failed_images == [{'row': 99, 'path': 'bad.jpg', 'reason': 'cannot decode'}]
    meta = json.loads((tmp_path / 'map' / 'map.json').read_text())
    assert meta['schema_version'] == 2 and meta['raw_dim'] == meta['embedding_dim'] == 384
    assert meta['kind'] == 'localization'
    assert set(meta['files']) == {'raw', 'utm', 'yaw', 'stamps_ns', 'ids', 'paths'}
    assert all(len(f['sha256']) == 64 for f in meta['files'].values())
    # every file is named after its content, so a new map never overwrites a current file
    assert all(f['name'].split('-')[-1].split('.')[0] == f['sha256'][:12]
               for f in meta['files'].values())


def test_with_head(tmp_path, projector):
    written = _write(tmp_path / 'map', projector=projector)
    loaded = MapDatabase.load(tmp_path / 'map', PatchGridBackbone(), projector)
    assert loaded.head_fingerprint == projector.fingerprint
    assert loaded.embeddings.shape == (40, 16) and loaded.embeddings.dtype == np.float32
    np.testing.assert_allclose(loaded.embeddings,
                               projector.project(written.raw.astype(np.float32)), rtol=1e-6)
    with pytest.raises(MapError, match=r'configured head is \(none\)'):
        loaded.check_head(None)


def test_corrupt_array_is_refused(tmp_path):
    path = _write(tmp_path / 'map').file('utm')
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(MapError, match=r'utm-\w+\.npy: sha256 differs.*build-map'):
        MapDatabase.load(tmp_path / 'map')


def test_missing_file_and_missing_map_json(tmp_path):
    _write(tmp_path / 'map').file('paths').unlink()
    with pytest.raises(MapError, match=r'paths-\w+\.json: missing map file'):
        MapDatabase.load(tmp_path / 'map')
    (tmp_path / 'map' / 'map.json').unlink()
    with pytest.raises(MapError, match=r'no map\.json.*did not finish'):
        MapDatabase.load(tmp_path / 'map')


@pytest.mark.parametrize('edit, match', [
    (lambda m: m.update(schema_version=99), 'schema_version 99'),
    (lambda m: m.pop('utm_zone'), 'missing fields'),
    (lambda m: m.update(count=41), r'shape \(40, 384\) but map\.json says \(41, 384\)'),
])
def test_inconsistent_map_json_is_refused(tmp_path, edit, match):
    _write(tmp_path / 'map')
    path = tmp_path / 'map' / 'map.json'
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(MapError, match=match):
        MapDatabase.load(tmp_path / 'map')


def test_garbled_map_json_is_refused(tmp_path):
    _write(tmp_path / 'map')
    (tmp_path / 'map' / 'map.json').write_text('{"schema_version": 1, ')
    with pytest.raises(MapError, match='unreadable'):
        MapDatabase.load(tmp_path / 'map')


def test_array_of_wrong_dtype_is_refused_even_with_matching_hash(tmp_path):
    yaw = _write(tmp_path / 'map').file('yaw')
    np.save(yaw, np.zeros(40, np.float32))
    meta = json.loads((tmp_path / 'map' / 'map.json').read_text())
    # digests and size made to match the new file: the dtype and shape check still refuses it
    meta['files']['yaw'].update(sha256=sha256_file(yaw), bytes=yaw.stat().st_size,
                                sample_sha256=sample_sha256_file(yaw))
    (tmp_path / 'map' / 'map.json').write_text(json.dumps(meta))
    with pytest.raises(MapError, match=r'yaw-\w+\.npy: <f4 \[40\] but map\.json says <f8 \[40\]'):
        MapDatabase.load(tmp_path / 'map')


def test_other_backbone_is_refused(tmp_path):
    _write(tmp_path / 'map', name='vit_small_patch14_dinov2', fingerprint='ab' * 32)
    with pytest.raises(MapError, match=r"built with backbone 'vit_small_patch14_dinov2' .*"
                                       r"configured backbone is 'patchgrid'.*build-map"):
        MapDatabase.load(tmp_path / 'map', PatchGridBackbone())
    _write(tmp_path / 'map2', fingerprint='cd' * 32)       # same name, other weights
    with pytest.raises(MapError, match=r'weights cdcdcdcdcdcd.*weights '):
        MapDatabase.load(tmp_path / 'map2', PatchGridBackbone())


def test_other_head_is_refused(tmp_path, projector):
    _write(tmp_path / 'map')
    with pytest.raises(MapError, match=r'projected with head \(none\).*configured head is '
                                       f'{projector.fingerprint[:12]}.*no re-embedding'):
        MapDatabase.load(tmp_path / 'map', PatchGridBackbone(), projector)


def test_bad_arrays_are_refused_on_write(tmp_path):
    with pytest.raises(MapError, match=r'utm has shape \(3, 3\)'):
        MapDatabase.write(tmp_path / 'm', np.zeros((3, 4)), np.zeros((3, 3)), '17T',
                          backbone_name='x', backbone_fingerprint='y')
    with pytest.raises(MapError, match='overflow float16'):
        MapDatabase.write(tmp_path / 'm', np.full((3, 4), 1e6), np.zeros((3, 2)), '17T',
                          backbone_name='x', backbone_fingerprint='y')
