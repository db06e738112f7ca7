"""build_map: resumable after SIGKILL (byte-identical), failures recorded, heads, re-runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

from map_samples import CountingBackbone, map_bytes, write_route
import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import MapError
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.head.training import train_head
from aesvc_vpr.retrieval.mapbuild import BUILD_DIR, build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase


COUNT, CHUNK, BATCH = 48, 8, 4

# a real build in a child process; each batch is slowed down so the parent can kill it mid-way
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from aesvc_vpr.data.datasets import GeoImageSet
    from aesvc_vpr.retrieval.mapbuild import build_map
    from aesvc_vpr.backbone.patchgrid import PatchGridBackbone

    class Slow(PatchGridBackbone):
        def embed(self, images):
            time.sleep(0.05)
            return super().embed(images)

    paths = open(sys.argv[2]).read().split()
    utm = np.load(sys.argv[3])
    build_map(GeoImageSet(paths, utm, '17T'), sys.argv[1], Slow(), batch_size=4, chunk_size=8,
              progress=False)
""")


@pytest.fixture(scope='module')
def route(tmp_path_factory):
    return write_route(tmp_path_factory.mktemp('route'), COUNT)


def test_sigkill_then_resume_is_byte_identical(tmp_path, route):
    route = GeoImageSet(route.paths, route.utm, route.utm_zone)     # what the child builds
    reference = build_map(route, tmp_path / 'ref', PatchGridBackbone(),
                          batch_size=BATCH, chunk_size=CHUNK, progress=False)
    assert reference.count == COUNT
    list_file, utm_file = tmp_path / 'paths.txt', tmp_path / 'utm.npy'
    list_file.write_text('\n'.join(route.paths))
    np.save(utm_file, route.utm)
    target = tmp_path / 'killed'
    build = target / BUILD_DIR
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[3])}
    saved_at_kill = []
    for wait_for_chunks in (1, 3):       # kill twice, at different points
        child = subprocess.Popen([sys.executable, '-c', CHILD, str(target), str(list_file),
                                  str(utm_file)], env=env)
        deadline = time.monotonic() + 60
        while len(list(build.glob('chunk_*.npz'))) < wait_for_chunks:
            assert child.poll() is None, 'child finished or died before it could be killed'
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        saved_at_kill.append(len(list(build.glob('chunk_*.npz'))))
    assert not (target / 'map.json').exists()
    assert saved_at_kill[-1] < COUNT // CHUNK
    resumer = CountingBackbone()
    resumed = build_map(route, target, resumer, batch_size=BATCH, chunk_size=CHUNK,
                        progress=False)
    # only the chunks not on disk were embedded again: at most one was lost per kill
    assert resumer.embedded == COUNT - saved_at_kill[-1] * CHUNK
    assert map_bytes(target) == map_bytes(tmp_path / 'ref')
    assert resumed.count == COUNT and not build.exists()


def test_undecodable_images_are_listed_skipped_and_counted(tmp_path, route):
    paths = list(route.paths[:10])
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n this is not a png')
    paths[3] = str(broken)
    paths[7] = str(tmp_path / 'missing.png')
    images = GeoImageSet(tuple(paths), route.utm[:10], route.utm_zone, route.yaw[:10])
    mapdb = build_map(images, tmp_path / 'map', PatchGridBackbone(), batch_size=BATCH,
                      chunk_size=CHUNK, progress=False, max_failed_fraction=0.2)
    assert mapdb.count == 8
    np.testing.assert_array_equal(mapdb.ids, [0, 1, 2, 4, 5, 6, 8, 9])
    np.testing.assert_array_equal(mapdb.utm, route.utm[[0, 1, 2, 4, 5, 6, 8, 9]])
    failed = json.loads((tmp_path / 'map' / 'map.json').read_text())['failed_images']
    assert [(f['row'], f['path']) for f in failed] == [(3, str(broken)), (7, paths[7])]
    assert 'corrupt PNG' in failed[0]['reason']
    assert 'cannot read or decode' in failed[1]['reason']
    assert mapdb.failed_images == failed


def test_all_images_failing_is_an_error(tmp_path, route):
    images = GeoImageSet((str(tmp_path / 'a.png'), str(tmp_path / 'b.png')), route.utm[:2])
    with pytest.raises(MapError, match=r'none of the 2 images.*a\.png'):
        build_map(images, tmp_path / 'map', PatchGridBackbone(), progress=False)


def test_complete_map_is_kept_and_reprojected_without_re_embedding(tmp_path, route):
    images = route.subset(range(16))
    build_map(images, tmp_path / 'map', PatchGridBackbone(), batch_size=BATCH,
              chunk_size=CHUNK, progress=False)
    before = map_bytes(tmp_path / 'map')
    backbone = CountingBackbone()
    again = build_map(images, tmp_path / 'map', backbone, batch_size=BATCH, chunk_size=CHUNK,
                      progress=False)
    assert backbone.embedded == 0 and again.count == 16 and map_bytes(tmp_path / 'map') == before

    head_cfg = HeadConfig(latent_dim=16, prefix_sizes=(4, 8, 16))
    train_cfg = TrainConfig(epochs=1, batch_size=4, patience=1)
    trained = build_map(images, tmp_path / 'map', backbone, batch_size=BATCH, chunk_size=CHUNK,
                        train=(head_cfg, train_cfg), progress=False)
    assert backbone.embedded == 0
    assert Path(trained.head_file).parent == tmp_path / 'map'
    assert Path(trained.head_file).name.startswith('head-')
    projector = Projector.load(trained.head_file)
    assert trained.head_fingerprint == projector.fingerprint
    assert trained.embeddings.shape == (16, 16)
    np.testing.assert_array_equal(trained.raw, np.load(trained.file('raw')))
    loaded = MapDatabase.load(tmp_path / 'map', PatchGridBackbone(), projector)
    np.testing.assert_allclose(loaded.embeddings,
                               projector.project(loaded.raw.astype(np.float32)), rtol=1e-6)
    fingerprint = trained.head_fingerprint
    kept = build_map(images, tmp_path / 'map', backbone, batch_size=BATCH, chunk_size=CHUNK,
                     train=(head_cfg, train_cfg), progress=False)
    assert kept.head_fingerprint == fingerprint      # same settings: not trained again
    plain = build_map(images, tmp_path / 'map', backbone, batch_size=BATCH, chunk_size=CHUNK,
                      progress=False)
    assert plain.head_fingerprint == fingerprint     # a plain re-run keeps the map's head

    other_head = tmp_path / 'other.safetensors'
    train_head(np.random.default_rng(3).standard_normal((32, PatchGridBackbone.dim)),
               PatchGridBackbone.name, head_cfg, train_cfg, other_head, progress=False)
    other = Projector.load(other_head)
    reprojected = build_map(images, tmp_path / 'map', backbone, batch_size=BATCH,
                            chunk_size=CHUNK, projector=other, progress=False)
    assert backbone.embedded == 0 and reprojected.head_fingerprint == other.fingerprint
    assert reprojected.head_file == ''
    np.testing.assert_allclose(reprojected.embeddings,
                               other.project(trained.raw.astype(np.float32)), rtol=1e-6)


def test_head_training_during_a_fresh_build(tmp_path, route):
    mapdb = build_map(route.subset(range(16)), tmp_path / 'map', PatchGridBackbone(),
                      batch_size=BATCH, chunk_size=CHUNK, progress=False,
                      train=(HeadConfig(latent_dim=8, prefix_sizes=(4, 8)),
                             TrainConfig(epochs=1, batch_size=4, patience=1)))
    assert mapdb.embeddings.shape == (16, 8) and mapdb.head_fingerprint
    assert mapdb.meta['head_training']['head']['prefix_sizes'] == [4, 8]


def test_changed_inputs_start_over(tmp_path, route):
    build_map(route.subset(range(8)), tmp_path / 'map', PatchGridBackbone(), chunk_size=CHUNK,
              progress=False)
    backbone = CountingBackbone()
    mapdb = build_map(route.subset(range(12)), tmp_path / 'map', backbone, chunk_size=CHUNK,
                      progress=False)
    assert backbone.embedded == 12 and mapdb.count == 12


def test_bad_options(tmp_path, route):
    with pytest.raises(MapError, match='chunk_size'):
        build_map(route, tmp_path / 'm', PatchGridBackbone(), chunk_size=0)
    with pytest.raises(MapError, match='no database images'):
        build_map(route.subset([]), tmp_path / 'm', PatchGridBackbone())


def test_too_many_failures_fail_the_build_and_a_rerun_retries_only_them(tmp_path, route):
    images = route.subset(range(16))
    folder = tmp_path / 'images'
    folder.mkdir()
    paths = []
    for i, path in enumerate(images.paths):
        copy = folder / Path(path).name
        data = Path(path).read_bytes()
        copy.write_bytes(data[:len(data) // 2] if i in (2, 9, 13) else data)   # cut PNGs
        paths.append(str(copy))
    broken = GeoImageSet(tuple(paths), images.utm, images.utm_zone)
    with pytest.raises(MapError, match=r'3 of 16 images \(18\.8 %\) could not be used, more '
                                       r'than --max-failed-fraction 0\.05: .*img0002\.png: .*'
                                       r'truncated PNG.*only they are retried'):
        build_map(broken, tmp_path / 'map', PatchGridBackbone(), batch_size=BATCH,
                  chunk_size=CHUNK, progress=False)
    assert not (tmp_path / 'map' / 'map.json').exists()
    assert len(list((tmp_path / 'map' / BUILD_DIR).glob('chunk_*.npz'))) == 2   # work kept
    for i in (2, 9, 13):
        Path(paths[i]).write_bytes(Path(images.paths[i]).read_bytes())          # fixed
    backbone = CountingBackbone()
    mapdb = build_map(broken, tmp_path / 'map', backbone, batch_size=BATCH, chunk_size=CHUNK,
                      progress=False)
    assert backbone.embedded == 3 and mapdb.count == 16 and not mapdb.failed_images
    reference = build_map(broken, tmp_path / 'ref', PatchGridBackbone(), batch_size=BATCH,
                          chunk_size=CHUNK, progress=False)
    np.testing.assert_array_equal(mapdb.raw, reference.raw)
    np.testing.assert_array_equal(mapdb.ids, np.arange(16))
