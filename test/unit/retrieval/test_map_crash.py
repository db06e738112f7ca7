"""Map writes under SIGKILL at every step, and two writers on one map directory.

A real build runs in a child process. ``AESVC_VPR_TEST_TRACE`` lists the write steps it passes;
the test then kills a fresh child at each of them (``AESVC_VPR_TEST_KILL_AT``) and checks that the
directory holds the old consistent map or the new one, never neither, and that a re-run finishes
without re-embedding. ``AESVC_VPR_TEST_STOP_AT`` stops a writer while it holds the lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import textwrap

from map_samples import CountingBackbone, write_route
import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.common.crashpoints import KILL_ENV, STOP_ENV, TRACE_ENV
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import MapError
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.head.training import train_head
from aesvc_vpr.retrieval.mapbuild import build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase

REPO = Path(__file__).resolve().parents[3]
COUNT = 16
HEAD = HeadConfig(latent_dim=8, prefix_sizes=(4, 8))
TRAIN_A = TrainConfig(epochs=1, batch_size=4, patience=1, seed=0)
TRAIN_B = TrainConfig(epochs=1, batch_size=4, patience=1, seed=1)

# one build_map call in a child process: {"map", "paths", "utm", "train_seed", "head"}
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
    from aesvc_vpr.config import HeadConfig, TrainConfig
    from aesvc_vpr.data.datasets import GeoImageSet
    from aesvc_vpr.head.projector import Projector
    from aesvc_vpr.retrieval.mapbuild import build_map

    job = json.loads(sys.argv[1])
    images = GeoImageSet(json.load(open(job['paths'])), np.load(job['utm']), '17T')
    train = None
    if job.get('train_seed') is not None:
        train = (HeadConfig(latent_dim=8, prefix_sizes=(4, 8)),
                 TrainConfig(epochs=1, batch_size=4, patience=1, seed=job['train_seed']))
    projector = Projector.load(job['head']) if job.get('head') else None
    build_map(images, job['map'], PatchGridBackbone(), batch_size=4, chunk_size=8,
              progress=False, train=train, projector=projector)
""")


@pytest.fixture(scope='module')
def route(tmp_path_factory) -> tuple[GeoImageSet, Path, Path]:
    folder = tmp_path_factory.mktemp('crash')
    images = write_route(folder / 'images', COUNT)
    images = GeoImageSet(images.paths, images.utm, images.utm_zone)
    (folder / 'paths.json').write_text(json.dumps(list(images.paths)))
    np.save(folder / 'utm.npy', images.utm)
    return images, folder / 'paths.json', folder / 'utm.npy'


@pytest.fixture(scope='module')
def other_head(tmp_path_factory) -> Projector:
    path = tmp_path_factory.mktemp('other') / 'other.safetensors'
    raw = np.random.default_rng(3).standard_normal((32, PatchGridBackbone.dim))
    train_head(raw.astype(np.float32), PatchGridBackbone.name, HEAD, TRAIN_A, path,
               progress=False)
    return Projector.load(path)


def _child(job: dict, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, 'PYTHONPATH': str(REPO), **(env or {})}
    for name in (KILL_ENV, STOP_ENV, TRACE_ENV):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.Popen([sys.executable, '-c', CHILD, json.dumps(job)], env=full_env)


def _steps(job: dict, tmp_path: Path) -> list[str]:
    trace = tmp_path / 'trace.txt'
    assert _child(job, {TRACE_ENV: str(trace)}).wait() == 0
    return list(dict.fromkeys(trace.read_text().split()))


def _consistent(root: Path) -> MapDatabase:
    """Load the map and check that head file, embeddings and the directory's files agree."""
    mapdb = MapDatabase.load(root, PatchGridBackbone())
    if mapdb.head_fingerprint:
        projector = Projector.load(mapdb.head_file) if mapdb.head_file else None
        if projector is not None:
            mapdb.check_head(projector)
            np.testing.assert_allclose(mapdb.embeddings,
                                       projector.project(mapdb.raw.astype(np.float32)),
                                       rtol=1e-5, atol=1e-6)
    return mapdb


def _only_named_files(root: Path) -> None:
    named = {entry['name'] for entry in mapdb_files(root).values()}
    present = {p.name for p in root.iterdir() if p.name not in ('map.json', '.lock')}
    assert present == named, f'stale or temporary files left: {sorted(present - named)}'


def mapdb_files(root: Path) -> dict:
    """Return the files entry of a map's map.json."""
    return json.loads((root / 'map.json').read_text())['files']


def _kill_everywhere(tmp_path: Path, base: Path, job: dict, expect_steps: set[str],
                     is_old, is_new, rerun) -> int:
    """Kill the job at every step it passes; returns the number of kill points."""
    steps = _steps({**job, 'map': str(_copy(base, tmp_path / 'traced'))}, tmp_path)
    assert expect_steps <= set(steps), steps
    for step in steps:
        target = _copy(base, tmp_path / f'killed-{step}')
        child = _child({**job, 'map': str(target)}, {KILL_ENV: step})
        assert child.wait() == -signal.SIGKILL, f'the writer did not stop at {step}'
        mapdb = _consistent(target) if (target / 'map.json').exists() else None
        old, new = is_old(mapdb), is_new(mapdb)
        assert old or new, f'killed at {step}: neither the old map nor the new one'
        backbone = CountingBackbone()
        final = rerun(target, backbone)
        assert is_new(_consistent(target)) and is_new(final), step
        _only_named_files(target)
        if base.exists():
            assert backbone.embedded == 0, f'killed at {step}: the re-run embedded images again'
    return len(steps)


def _copy(base: Path, target: Path) -> Path:
    if base.exists():
        shutil.copytree(base, target)
    return target


def test_kill_while_retraining_a_head_keeps_the_old_head_or_the_new(tmp_path, route):
    images, paths, utm = route
    base = tmp_path / 'base'
    old = build_map(images, base, PatchGridBackbone(), batch_size=4, chunk_size=8,
                    train=(HEAD, TRAIN_A), progress=False)
    job = {'paths': str(paths), 'utm': str(utm), 'train_seed': 1}

    def rerun(target, backbone):
        return build_map(images, target, backbone, batch_size=4, chunk_size=8,
                         train=(HEAD, TRAIN_B), progress=False)

    kills = _kill_everywhere(
        tmp_path, base, job, {'map.head', 'map.file.raw', 'map.file.embeddings',
                              'map.json.tmp', 'map.json', 'map.cleanup'},
        is_old=lambda m: m is not None and m.head_fingerprint == old.head_fingerprint,
        is_new=lambda m: (m is not None and m.meta['head_training']['train']['seed'] == 1
                          and m.head_fingerprint != old.head_fingerprint),
        rerun=rerun)
    assert kills >= 10


def test_kill_while_reprojecting_with_another_head_never_loses_the_map(tmp_path, route,
                                                                       other_head):
    images, paths, utm = route
    base = tmp_path / 'base'
    old = build_map(images, base, PatchGridBackbone(), batch_size=4, chunk_size=8,
                    progress=False)
    job = {'paths': str(paths), 'utm': str(utm), 'head': str(other_head.path)}

    def rerun(target, backbone):
        return build_map(images, target, backbone, batch_size=4, chunk_size=8,
                         projector=other_head, progress=False)

    _kill_everywhere(
        tmp_path, base, job, {'map.file.embeddings', 'map.json.tmp', 'map.json'},
        is_old=lambda m: m is not None and m.head_fingerprint == old.head_fingerprint == '',
        is_new=lambda m: m is not None and m.head_fingerprint == other_head.fingerprint,
        rerun=rerun)


def test_kill_during_a_first_build_leaves_no_map_or_the_whole_map(tmp_path, route):
    images, paths, utm = route
    job = {'paths': str(paths), 'utm': str(utm), 'train_seed': 0}

    def rerun(target, backbone):
        return build_map(images, target, backbone, batch_size=4, chunk_size=8,
                         train=(HEAD, TRAIN_A), progress=False)

    _kill_everywhere(
        tmp_path, tmp_path / 'no-base', job, {'map.head', 'map.json.tmp', 'map.json'},
        is_old=lambda m: m is None,
        is_new=lambda m: m is not None and m.count == COUNT and bool(m.head_file),
        rerun=rerun)


def test_second_writer_gets_one_error_naming_the_holder(tmp_path, route, other_head):
    images, paths, utm = route
    root = tmp_path / 'map'
    old = build_map(images, root, PatchGridBackbone(), batch_size=4, chunk_size=8,
                    progress=False)
    child = _child({'paths': str(paths), 'utm': str(utm), 'map': str(root),
                    'head': str(other_head.path)}, {STOP_ENV: 'map.file.raw'})
    try:
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), 'the writer did not stop while holding the lock'
        with pytest.raises(MapError, match=rf'another writer \(pid {child.pid}\) is writing'):
            build_map(images, root, PatchGridBackbone(), batch_size=4, chunk_size=8,
                      train=(HEAD, TRAIN_A), progress=False)
        with pytest.raises(MapError, match=rf'pid {child.pid}'):
            MapDatabase.write(root, old.raw, old.utm, '17T', backbone_name='x',
                              backbone_fingerprint='y')
        # readers never lock: the old map loads while the writer holds the lock
        assert MapDatabase.load(root).head_fingerprint == ''
    finally:
        child.kill()
        child.wait()
    # the kernel released the dead writer's lock: the next writer goes ahead
    again = build_map(images, root, PatchGridBackbone(), batch_size=4, chunk_size=8,
                      projector=other_head, progress=False)
    assert again.head_fingerprint == other_head.fingerprint
    assert _consistent(root).head_fingerprint == other_head.fingerprint


def test_up_to_date_means_the_head_file_is_the_one_map_json_names(tmp_path, route, other_head):
    images = route[0]
    root = tmp_path / 'map'
    trained = build_map(images, root, PatchGridBackbone(), batch_size=4, chunk_size=8,
                        train=(HEAD, TRAIN_A), progress=False)
    # the head file is replaced behind the map's back (as a crash did before map.json existed)
    shutil.copyfile(other_head.path, trained.head_file)
    backbone = CountingBackbone()
    again = build_map(images, root, backbone, batch_size=4, chunk_size=8,
                      train=(HEAD, TRAIN_A), progress=False)
    assert backbone.embedded == 0, 'the raw embeddings were thrown away'
    assert _consistent(root).head_fingerprint == again.head_fingerprint
    assert Projector.load(again.head_file).fingerprint == again.head_fingerprint
    _only_named_files(root)
