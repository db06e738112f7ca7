"""The local frame's origin: in map.json, checked against the utm file, derived if absent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.map_origin import derive_origin
from aesvc_vpr.retrieval.mapdb import MapDatabase

UTM = np.array([[585_512.37, 4_477_634.81], [585_612.0, 4_477_700.25], [586_020.5, 4_478_900.0]])


def _write(root):
    backbone = PatchGridBackbone()
    raw = np.random.default_rng(0).standard_normal((len(UTM), backbone.dim))
    return MapDatabase.write(root, raw, UTM, '18T', backbone_name=backbone.name,
                             backbone_fingerprint=backbone.fingerprint)


def _edit(root, change) -> None:
    path = root / 'map.json'
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_origin_is_the_first_place_rounded_to_a_kilometre_and_recorded(tmp_path) -> None:
    written = _write(tmp_path / 'map')
    assert written.origin_utm == (586_000.0, 4_478_000.0)
    assert json.loads((tmp_path / 'map' / 'map.json').read_text())['origin_utm'] == \
        [586_000.0, 4_478_000.0]
    loaded = MapDatabase.load(tmp_path / 'map')
    assert loaded.origin_utm == written.origin_utm
    # exact both ways in float64: the node's local positions plus the origin are the map's
    local = loaded.utm - np.array(loaded.origin_utm)
    np.testing.assert_array_equal(local + np.array(loaded.origin_utm), UTM)
    assert np.abs(local).max() < 1000.0


def test_a_map_without_the_field_derives_the_same_origin(tmp_path) -> None:
    _write(tmp_path / 'map')
    _edit(tmp_path / 'map', lambda meta: meta.pop('origin_utm'))
    assert MapDatabase.load(tmp_path / 'map').origin_utm == (586_000.0, 4_478_000.0)


def test_an_edited_origin_is_refused(tmp_path) -> None:
    _write(tmp_path / 'map')
    _edit(tmp_path / 'map', lambda meta: meta.update(origin_utm=[585_000.0, 4_478_000.0]))
    with pytest.raises(MapError, match='origin_utm .* is not the origin its utm file gives'):
        MapDatabase.load(tmp_path / 'map')
    _edit(tmp_path / 'map', lambda meta: meta.update(origin_utm=['x', 1]))
    with pytest.raises(MapError, match='origin_utm must be \\[easting, northing\\]'):
        MapDatabase.load(tmp_path / 'map')


def test_extra_facts_may_not_set_the_origin(tmp_path) -> None:
    backbone = PatchGridBackbone()
    with pytest.raises(MapError, match='origin_utm'):
        MapDatabase.write(tmp_path / 'map', np.ones((3, backbone.dim)), UTM, '18T',
                          backbone_name=backbone.name, backbone_fingerprint=backbone.fingerprint,
                          extra={'origin_utm': [0.0, 0.0]})


def test_derive_origin_of_no_rows_or_a_non_finite_first_row_is_zero() -> None:
    assert derive_origin(np.empty((0, 2))) == (0.0, 0.0)
    assert derive_origin(np.array([[np.nan, 1.0]])) == (0.0, 0.0)
    assert derive_origin(np.array([[499.9, -500.1]])) == (0.0, -1000.0)
