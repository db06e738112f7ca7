"""build_map from image URLs (a real HTTP server on loopback): the map of the same local files."""

from __future__ import annotations

import importlib.util

from http_images import serve_folder, url_set
from map_samples import map_bytes, MAP_ROLES, write_route
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.mapbuild import build_map

COUNT, CHUNK, BATCH, GONE = 20, 8, 4, 5


def test_a_map_from_urls_is_the_map_from_paths_and_lists_a_404(tmp_path):
    route = write_route(tmp_path / 'images', COUNT)
    paths = list(route.paths)
    paths[GONE] = str(tmp_path / 'images' / 'gone.png')       # neither a file nor served
    local = GeoImageSet(tuple(paths), route.utm, route.utm_zone, route.yaw, route.stamps_ns)
    with serve_folder(tmp_path / 'images') as base:
        urls = url_set(local, base)
        from_urls = build_map(urls, tmp_path / 'urls', PatchGridBackbone(), batch_size=BATCH,
                              chunk_size=CHUNK, progress=False, max_failed_fraction=0.1)
    from_paths = build_map(local, tmp_path / 'paths', PatchGridBackbone(), batch_size=BATCH,
                           chunk_size=CHUNK, progress=False, max_failed_fraction=0.1)
    got, want = map_bytes(tmp_path / 'urls'), map_bytes(tmp_path / 'paths')
    assert {r: got[r] for r in MAP_ROLES if r != 'paths'} == \
        {r: want[r] for r in MAP_ROLES if r != 'paths'}
    assert from_urls.count == from_paths.count == COUNT - 1
    assert list(from_urls.paths) == [u for i, u in enumerate(urls.paths) if i != GONE]
    failed, = from_urls.failed_images
    assert failed == {'row': GONE, 'path': f'{base}/gone.png',
                      'reason': f'{base}/gone.png: cannot fetch the image (not found)'}
    assert [f['row'] for f in from_paths.failed_images] == [GONE]


@pytest.mark.skipif(importlib.util.find_spec('s3fs') is not None, reason='s3fs is installed')
def test_a_protocol_without_its_package_fails_before_any_work(tmp_path):
    route = write_route(tmp_path / 'images', 2)
    images = GeoImageSet((route.paths[0], 's3://bucket/img1.png'), route.utm)
    with pytest.raises(MapError, match=r'needs the s3fs package.*pip install s3fs'):
        build_map(images, tmp_path / 'map', PatchGridBackbone(), progress=False)
    assert not (tmp_path / 'map').exists()
