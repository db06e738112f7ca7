"""map.json is validated before use: holes, wrong types, overrides, paths out, version 1 maps."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.common.fileio import sha256_file
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import MapError
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.head.training import train_head
from aesvc_vpr.retrieval.mapdb import MapDatabase

N = 12


@pytest.fixture(scope='module')
def projector(tmp_path_factory) -> Projector:
    raw = np.random.default_rng(1).standard_normal((32, PatchGridBackbone.dim))
    path = tmp_path_factory.mktemp('head') / 'head.safetensors'
    train_head(raw.astype(np.float32), PatchGridBackbone.name,
               HeadConfig(latent_dim=8, prefix_sizes=(4, 8)),
               TrainConfig(epochs=1, batch_size=8, patience=1), path, progress=False)
    return Projector.load(path)


def _write(root: Path, projector: Projector | None = None, **kwargs) -> MapDatabase:
    rng = np.random.default_rng(0)
    backbone = PatchGridBackbone()
    return MapDatabase.write(root, rng.standard_normal((N, backbone.dim)),
                             rng.uniform(0, 99, (N, 2)), '17T', backbone_name=backbone.name,
                             backbone_fingerprint=backbone.fingerprint, projector=projector,
                             **kwargs)


def _edit(root: Path, change) -> None:
    path = root / 'map.json'
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_a_headed_map_without_its_embeddings_entry_is_refused(tmp_path, projector):
    _write(tmp_path / 'map', projector)
    _edit(tmp_path / 'map', lambda m: m['files'].pop('embeddings'))
    with pytest.raises(MapError, match=r"files lacks \['embeddings'\], which a headed "
                                       'localization map needs'):
        MapDatabase.load(tmp_path / 'map', PatchGridBackbone(), projector)


@pytest.mark.parametrize('role', ['utm', 'raw', 'paths', 'yaw', 'ids', 'stamps_ns'])
def test_every_required_file_entry_is_checked(tmp_path, role):
    _write(tmp_path / 'map')
    _edit(tmp_path / 'map', lambda m: m['files'].pop(role))
    with pytest.raises(MapError, match=rf"files lacks \['{role}'\]"):
        MapDatabase.load(tmp_path / 'map')


@pytest.mark.parametrize('change, match', [
    (lambda m: m.update(files=['raw.npy']), 'files must be an object, got list'),
    (lambda m: m['files'].update(raw='raw.npy'), 'files.raw must be an object, got str'),
    (lambda m: m['files']['utm'].update(shape='40,2'), 'files.utm needs a dtype string'),
    (lambda m: m['files']['utm'].update(sha256=7), 'files.utm.sha256 must be a sha256'),
    (lambda m: m.update(count='12'), 'count must be an integer >= 1'),
    (lambda m: m.update(count=True), 'count must be an integer >= 1'),
    (lambda m: m.update(backbone='patchgrid'), 'backbone must be'),
    (lambda m: m.update(head=None), 'head must be'),
    (lambda m: m.update(failed_images={}), 'failed_images must be a list'),
    (lambda m: m.update(kind='atlas'), "kind 'atlas' is not one of"),
    (lambda m: m['files'].update(extra={'name': 'x', 'sha256': '0' * 64}),
     r"unknown entries \['extra'\]"),
    (lambda m: m.update(source=3), 'source must be str'),
])
def test_wrong_types_are_one_map_error(tmp_path, change, match):
    _write(tmp_path / 'map')
    _edit(tmp_path / 'map', change)
    with pytest.raises(MapError, match=match):
        MapDatabase.load(tmp_path / 'map')


def test_extra_may_not_overwrite_schema_fields(tmp_path):
    for field in ('count', 'files', 'kind', 'head'):
        with pytest.raises(MapError, match=rf"\['{field}'\] would overwrite schema fields"):
            _write(tmp_path / 'map', extra={field: 1})
    assert not (tmp_path / 'map' / 'map.json').exists()


@pytest.mark.parametrize('name', ['/etc/hostname', '../outside.npy', 'sub/raw.npy', '..'])
def test_file_names_must_stay_in_the_map_directory(tmp_path, name):
    _write(tmp_path / 'map')
    (tmp_path / 'outside.npy').write_bytes(b'')
    _edit(tmp_path / 'map', lambda m: m['files']['utm'].update(name=name))
    with pytest.raises(MapError, match='not a plain file name inside the map directory'):
        MapDatabase.load(tmp_path / 'map')


def test_a_head_file_name_must_stay_in_the_map_directory(tmp_path, projector):
    _write(tmp_path / 'map', projector)
    outside = tmp_path / 'head.safetensors'
    shutil.copyfile(projector.path, outside)
    _edit(tmp_path / 'map', lambda m: m['files'].update(
        head={'name': str(outside), 'sha256': projector.fingerprint}))
    with pytest.raises(MapError, match='not a plain file name'):
        MapDatabase.load(tmp_path / 'map')


def test_a_symlink_out_of_the_map_directory_is_refused(tmp_path):
    mapdb = _write(tmp_path / 'map')
    target = tmp_path / 'elsewhere.npy'
    shutil.move(mapdb.file('utm'), target)
    mapdb.file('utm').symlink_to(target)
    with pytest.raises(MapError, match='symlink out of the map directory'):
        MapDatabase.load(tmp_path / 'map')


def _as_version_1(mapdb: MapDatabase, root: Path) -> Path:
    """Lay a map out as format version 1 did: fixed file names, files keyed by name."""
    root.mkdir()
    files = {}
    for role, entry in mapdb.meta['files'].items():
        name = 'head.safetensors' if role == 'head' else \
            f'{role}{Path(entry["name"]).suffix}'
        shutil.copyfile(mapdb.root / entry['name'], root / name)
        if role != 'head':
            files[name] = {k: v for k, v in entry.items() if k != 'name'}
    meta = {k: v for k, v in mapdb.meta.items() if k not in ('kind', 'files')}
    meta.update(schema_version=1, files=files)
    if 'head' in mapdb.meta['files']:
        meta['head_file'] = 'head.safetensors'
    (root / 'map.json').write_text(json.dumps(meta))
    return root


def test_version_1_maps_still_load_and_are_rewritten_as_version_2(tmp_path, projector):
    # a head that lives in the map directory, as build-map --train-head left it in version 1
    (tmp_path / 'v2').mkdir()
    shutil.copyfile(projector.path, tmp_path / 'v2' / 'head-x.safetensors')
    own = Projector.load(tmp_path / 'v2' / 'head-x.safetensors')
    v2 = _write(tmp_path / 'v2', own)
    v1 = _as_version_1(v2, tmp_path / 'v1')
    loaded = MapDatabase.load(v1, PatchGridBackbone(), own)
    assert loaded.kind == 'localization' and loaded.head_file == str(v1 / 'head.safetensors')
    np.testing.assert_array_equal(loaded.embeddings, v2.embeddings)
    assert loaded.paths == v2.paths
    # the next write replaces it with version 2 files and removes the version 1 names
    _write(v1, Projector.load(loaded.head_file))
    assert json.loads((v1 / 'map.json').read_text())['schema_version'] == 2
    assert not (v1 / 'raw.npy').exists() and (v1 / 'head.safetensors').exists()
    assert MapDatabase.load(v1).head_fingerprint == own.fingerprint


def test_version_1_map_with_a_hole_is_refused(tmp_path):
    v1 = _as_version_1(_write(tmp_path / 'v2'), tmp_path / 'v1')
    _edit(v1, lambda m: m['files'].pop('utm.npy'))
    with pytest.raises(MapError, match=r"files lacks \['utm'\]"):
        MapDatabase.load(v1)
    _edit(v1, lambda m: m['files'].update({'utm.npy': {
        'sha256': sha256_file(v1 / 'utm.npy'), 'dtype': '<f8', 'shape': [N, 2]}}))
    assert MapDatabase.load(v1).count == N
