"""build-map on Ray (real Ray, a 2-node simulated cluster): the local map, resumable, retried."""

from __future__ import annotations

from functools import partial
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap

from http_images import serve_folder, url_set
from map_samples import flaky_backbone, map_bytes, write_route
import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.cli import main
from aesvc_vpr.common.crashpoints import KILL_ENV
from aesvc_vpr.config import BackboneConfig, RayBuildConfig
from aesvc_vpr.data.datasets import GeoImageSet, load_dataset
from aesvc_vpr.data.datasets.pittsburgh import write_dbstruct
from aesvc_vpr.retrieval.mapbuild import BUILD_DIR, build_map
from aesvc_vpr.retrieval.ray_build import (_ray_session, MANIFEST, RayExecutor, SHARD_STEP,
                                           USAGE_STATS)

REPO = Path(__file__).resolve().parents[3]
COUNT, CHUNK, BATCH = 48, 8, 4
PATCHGRID = BackboneConfig(model_name='patchgrid')

# a driver in a child process, joined to the test's cluster; it kills itself (SIGKILL) right
# after saving its second shard (AESVC_VPR_TEST_KILL_AT=ray.shard.2)
CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
    from aesvc_vpr.config import BackboneConfig, RayBuildConfig
    from aesvc_vpr.data.datasets import GeoImageSet
    from aesvc_vpr.retrieval.mapbuild import build_map
    from aesvc_vpr.retrieval.ray_build import RayExecutor

    paths = open(sys.argv[2]).read().split()
    executor = RayExecutor(BackboneConfig(model_name='patchgrid'),
                           RayBuildConfig(address=sys.argv[4], workers=2))
    build_map(GeoImageSet(paths, np.load(sys.argv[3]), '17T'), sys.argv[1], PatchGridBackbone(),
              batch_size=4, chunk_size=8, progress=False, executor=executor)
""")


@pytest.fixture(scope='session')
def ray_cluster():
    """Two simulated nodes of one CPU each, shared by every Ray test (a start costs seconds)."""
    os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
    # the nodes' workers import this checkout and the test samples (FlakyBackbone)
    os.environ['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO), str(REPO / 'test' / 'unit'), os.environ.get('PYTHONPATH', ''))
        if p)
    import ray
    from ray.cluster_utils import Cluster
    store = 100 * 2 ** 20
    cluster = Cluster(initialize_head=True, head_node_args={
        'num_cpus': 1, 'object_store_memory': store, 'include_dashboard': False})
    cluster.add_node(num_cpus=1, object_store_memory=store)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope='module')
def route(tmp_path_factory):
    return write_route(tmp_path_factory.mktemp('route'), COUNT)


def _manifest(root: Path) -> dict:
    return json.loads((root / BUILD_DIR / MANIFEST).read_text())


def test_cli_ray_build_is_the_local_map_and_uses_both_nodes(tmp_path, route, ray_cluster,
                                                            monkeypatch):
    import ray
    write_dbstruct(tmp_path / 'town.mat', route, route.subset(range(2)),
                   Path(route.paths[0]).parent)
    database = load_dataset(tmp_path / 'town.mat').database
    local = build_map(database, tmp_path / 'local', PatchGridBackbone(), batch_size=BATCH,
                      chunk_size=CHUNK, progress=False)
    shards_seen = []
    real_call = RayExecutor.__call__

    def keep_manifest(self, *args):
        chunks = real_call(self, *args)
        shards_seen.append(_manifest(tmp_path / 'ray'))      # removed once the map is written
        return chunks
    monkeypatch.setattr(RayExecutor, '__call__', keep_manifest)
    code = main(['build-map', str(tmp_path / 'town.mat'), str(tmp_path / 'ray'), '--model',
                 'patchgrid', '--executor', 'ray', '--batch-size', str(BATCH),
                 '--chunk-size', str(CHUNK)])
    assert code == 0 and local.count == COUNT
    assert map_bytes(tmp_path / 'ray') == map_bytes(tmp_path / 'local')
    assert not (tmp_path / 'ray' / BUILD_DIR).exists()
    manifest, = shards_seen
    assert [s['start'] for s in manifest['shards']] == list(range(0, COUNT, CHUNK))
    assert all(s['done'] and s['nodes'] for s in manifest['shards'])
    nodes = {n['NodeID'] for n in ray.nodes() if n['Alive']}
    assert len(nodes) == 2
    assert set().union(*(s['nodes'] for s in manifest['shards'])) == nodes


def test_a_failing_worker_is_retried_and_failed_images_match_local(tmp_path, route,
                                                                   ray_cluster):
    paths = list(route.paths[:16])
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n this is not a png')
    paths[3], paths[10] = str(broken), str(tmp_path / 'missing.png')
    images = GeoImageSet(tuple(paths), route.utm[:16], route.utm_zone, route.yaw[:16])
    local = build_map(images, tmp_path / 'local', PatchGridBackbone(), batch_size=BATCH,
                      chunk_size=CHUNK, progress=False, max_failed_fraction=0.2)
    marker = tmp_path / 'failed-once'
    executor = RayExecutor(PATCHGRID, RayBuildConfig(workers=2),
                           loader=partial(flaky_backbone, str(marker)))
    mapdb = build_map(images, tmp_path / 'ray', PatchGridBackbone(), batch_size=BATCH,
                      chunk_size=CHUNK, progress=False, max_failed_fraction=0.2,
                      executor=executor)
    assert marker.exists()                      # one actor's embed raised, and was retried
    assert mapdb.count == 14 and mapdb.failed_images == local.failed_images
    assert [f['row'] for f in mapdb.failed_images] == [3, 10]
    assert map_bytes(tmp_path / 'ray') == map_bytes(tmp_path / 'local')


def test_ray_decoding_tasks_read_urls_like_the_local_executor(tmp_path, route, ray_cluster):
    images = route.subset(range(16))
    with serve_folder(Path(route.paths[0]).parent) as base:
        urls = url_set(images, base)
        urls = GeoImageSet(urls.paths[:6] + (f'{base}/gone.png',) + urls.paths[7:], urls.utm,
                           urls.utm_zone, urls.yaw, urls.stamps_ns)
        local = build_map(urls, tmp_path / 'local', PatchGridBackbone(), batch_size=BATCH,
                          chunk_size=CHUNK, progress=False, max_failed_fraction=0.1)
        mapdb = build_map(urls, tmp_path / 'ray', PatchGridBackbone(), batch_size=BATCH,
                          chunk_size=CHUNK, progress=False, max_failed_fraction=0.1,
                          executor=RayExecutor(PATCHGRID, RayBuildConfig(workers=2)))
    assert mapdb.count == 15 and mapdb.failed_images == local.failed_images
    assert [(f['row'], f['reason']) for f in mapdb.failed_images] == [
        (6, f'{base}/gone.png: cannot fetch the image (not found)')]
    assert map_bytes(tmp_path / 'ray') == map_bytes(tmp_path / 'local')


def test_killed_driver_resumes_with_only_the_unfinished_shards(tmp_path, route, ray_cluster):
    route = GeoImageSet(route.paths, route.utm, route.utm_zone)     # what the child builds
    build_map(route, tmp_path / 'ref', PatchGridBackbone(), batch_size=BATCH, chunk_size=CHUNK,
              progress=False)
    list_file, utm_file = tmp_path / 'paths.txt', tmp_path / 'utm.npy'
    list_file.write_text('\n'.join(route.paths))
    np.save(utm_file, route.utm)
    target = tmp_path / 'killed'
    env = {**os.environ, KILL_ENV: f'{SHARD_STEP}.2',
           'PYTHONPATH': os.pathsep.join((str(REPO), os.environ.get('PYTHONPATH', '')))}
    child = subprocess.run([sys.executable, '-c', CHILD, str(target), str(list_file),
                            str(utm_file), ray_cluster.address], env=env, timeout=300)
    assert child.returncode == -signal.SIGKILL
    assert not (target / 'map.json').exists()
    killed = _manifest(target)
    kept = [s['start'] for s in killed['shards'] if s['done']]
    assert len(kept) == 2 and killed['runs'] == 1
    inodes = {s: os.stat(target / BUILD_DIR / f'chunk_{s:09d}.npz').st_ino for s in kept}

    seen, inodes_after = [], {}
    real_call = RayExecutor.__call__

    def keep_manifest(self, *args):
        chunks = real_call(self, *args)      # the shards, before the merge removes them
        seen.append(_manifest(target))
        inodes_after.update({s: os.stat(target / BUILD_DIR / f'chunk_{s:09d}.npz').st_ino
                             for s in kept})
        return chunks
    executor = RayExecutor(PATCHGRID, RayBuildConfig(workers=2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RayExecutor, '__call__', keep_manifest)
        build_map(route, target, PatchGridBackbone(), batch_size=BATCH, chunk_size=CHUNK,
                  progress=False, executor=executor)
    resumed, = seen
    runs = {s['start']: s['run'] for s in resumed['shards']}
    # the two shards saved before the kill were kept (same files); the other four re-embedded
    assert sorted(s for s, run in runs.items() if run == 1) == kept
    assert sum(run == 2 for run in runs.values()) == COUNT // CHUNK - 2
    assert inodes_after == inodes
    assert map_bytes(target) == map_bytes(tmp_path / 'ref')


def test_ray_is_imported_only_by_a_ray_build():
    code = ('import sys\n'
            'import aesvc_vpr.cli.build_map, aesvc_vpr.retrieval.ray_build\n'
            'import aesvc_vpr.retrieval.localizer, aesvc_vpr.ros.node\n'
            'print("ray" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, env={**os.environ, 'PYTHONPATH': str(REPO)}).stdout
    assert out.strip() == 'False'


def test_a_ray_session_turns_usage_statistics_off_and_restores_the_environment(
        ray_cluster, monkeypatch):
    for before in (None, '1'):
        if before is None:
            monkeypatch.delenv(USAGE_STATS, raising=False)
        else:
            monkeypatch.setenv(USAGE_STATS, before)
        with _ray_session(RayBuildConfig()) as ray:
            assert os.environ[USAGE_STATS] == '0'
            assert ray.is_initialized()
        assert os.environ.get(USAGE_STATS) == before
        assert ray.is_initialized()       # a cluster the session did not start stays up
