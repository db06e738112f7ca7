"""The Ray executor of build-map: shards decoded and embedded by a pool of Ray actors.

The database is cut into the local executor's shards and batches (``shards.batch_groups``).
Ray Data runs an actor pool (``map_batches`` with ``compute``, ``num_cpus`` and ``num_gpus``)
in which each actor loads the backbone once, then decodes each batch's files where it runs and
embeds them with ``shards.embed_batch``, with as many torch threads as it was given CPUs. The
driver collects the batches of each shard, writes the shard under a new name and renames it,
then records it in ``MAP/.build/manifest.json``: its fingerprint (backbone, runtime, batching,
its rows and their files) and the nodes that embedded it. Open-source Ray has no job
checkpoint, so this manifest is what makes a build resumable: a re-run embeds only the shards
that are not saved with a matching fingerprint. ``mapbuild.build_map`` merges the shards into
exactly the local executor's map, applying the head there (so shards hold raw embeddings, and
a new head re-uses them).

Ray is imported only here, and only when a build runs: the rest of the package and the node
never import it. Usage statistics are off, there is no dashboard, and a local cluster gets a
bounded object store.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
import hashlib
import json
import logging
import os
from pathlib import Path
import pickle
from typing import Any, Callable, Iterator

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.crashpoints import crash_point
from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import BackboneConfig, ImageConfig, RayBuildConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import MapError
from aesvc_vpr.images.files import decode_group
from aesvc_vpr.retrieval.mapbuild import retry_failed_images
from aesvc_vpr.retrieval.shards import (batch_groups, embed_batch, join_parts, load_shard,
                                        save_shard, shard_path)

log = logging.getLogger(__name__)

MANIFEST = 'manifest.json'
ACTOR_START_S = 600         # the pool's actors (loading their backbone) must be up by then
USAGE_STATS = 'RAY_USAGE_STATS_ENABLED'
SHARD_STEP = 'ray.shard'     # crash point after the k-th shard of a run: 'ray.shard.<k>'
BackboneLoader = Callable[[], Backbone]


def load_configured_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone as ``Encoder.load`` does (town views calibrate int8), on a worker."""
    from aesvc_vpr.retrieval.encoder import Encoder
    return Encoder.load(cfg).backbone


class RayExecutor:
    """``build_map``'s executor that spreads the shards over a Ray cluster."""

    def __init__(self, backbone_cfg: BackboneConfig, cfg: RayBuildConfig | None = None,
                 loader: BackboneLoader | None = None) -> None:
        """Describe the backbone every actor loads and the cluster to use.

        Args:
            backbone_cfg: the backbone's settings (its runtime joins the shard fingerprints).
            cfg: the cluster and the actor pool.
            loader: builds the backbone in an actor (picklable); default
                ``load_configured_backbone(backbone_cfg)``. It must give the driver's
                backbone: an actor refuses one with another fingerprint.
        """
        self.backbone_cfg = backbone_cfg
        self.cfg = cfg or RayBuildConfig()
        self.loader = loader

    def __call__(self, database: GeoImageSet, build: Path, backbone: Backbone,
                 state: dict[str, Any], progress: bool,
                 images: ImageConfig) -> list[dict[str, np.ndarray]]:
        """Embed the shards that are not saved with a matching fingerprint; all in row order.

        Raises:
            MapError: the cluster cannot be reached or the Ray job failed (the saved shards
                are kept for a re-run).
        """
        n, chunk_size, batch_size = len(database), state['chunk_size'], state['batch_size']
        starts = list(range(0, n, chunk_size))
        build.mkdir(parents=True, exist_ok=True)
        manifest = _read_manifest(build)
        prints = {s: self._fingerprint(database, s, chunk_size, batch_size, backbone)
                  for s in starts}
        old = {e['start']: e for e in manifest.get('shards', [])}
        done = [s for s in starts if shard_path(build, s).is_file() and old.get(s, {}).get(
            'fingerprint') == prints[s] and old[s].get('done')]
        entries = {s: old[s] if s in done else {'start': s, 'count': min(chunk_size, n - s),
                                                'fingerprint': prints[s], 'done': False}
                   for s in starts}
        run = int(manifest.get('runs', 0)) + 1
        manifest = {'runs': run, 'backbone': backbone.name,
                    'backbone_fingerprint': backbone.fingerprint,
                    'runtime': self.backbone_cfg.runtime, 'batch_size': batch_size,
                    'chunk_size': chunk_size, 'count': n, 'shards': [entries[s] for s in starts]}
        _write_manifest(build, manifest)
        if done:
            log.info('%s: resuming, %d of %d shards already embedded', build, len(done),
                     len(starts))
            retry_failed_images(build, done, database, backbone, batch_size, images)
        todo = [s for s in starts if s not in done]
        if todo:
            self._embed(database, build, backbone, manifest, entries, todo, progress, images)
        return [load_shard(build, s) for s in starts]

    def _fingerprint(self, database: GeoImageSet, start: int, chunk_size: int, batch_size: int,
                     backbone: Backbone) -> str:
        """Return what a saved shard must share with this build to be reused."""
        rows = range(start, min(start + chunk_size, len(database)))
        digest = hashlib.sha256(json.dumps({
            'backbone': backbone.name, 'backbone_fingerprint': backbone.fingerprint,
            'runtime': self.backbone_cfg.runtime, 'batch_size': batch_size,
            'rows': [rows.start, rows.stop]}).encode())
        digest.update('\n'.join(database.paths[r] for r in rows).encode())
        return digest.hexdigest()

    def _embed(self, database: GeoImageSet, build: Path, backbone: Backbone,
               manifest: dict[str, Any], entries: dict[int, dict[str, Any]], todo: list[int],
               progress: bool, images: ImageConfig) -> None:
        """Run the Ray pipeline over the shards in ``todo``; save each as it completes."""
        n, chunk_size = len(database), manifest['chunk_size']
        groups = batch_groups(todo, n, chunk_size, manifest['batch_size'])
        expected = Counter(g.start - g.start % chunk_size for g in groups)   # batches/shard
        parts: dict[int, dict[int, dict[str, np.ndarray]]] = {s: {} for s in todo}
        nodes: dict[int, set[str]] = {s: set() for s in todo}
        saved = 0
        total = sum(entries[s]['count'] for s in todo)
        with _ray_session(self.cfg) as ray, progress_bar(
                total=n, initial=n - total, desc='build-map (ray)', unit='img',
                enabled=progress) as bar:
            items = [{'start': g.start - g.start % chunk_size, 'index': i,
                      'rows': list(g), 'paths': [database.paths[r] for r in g]}
                     for i, g in enumerate(groups)]
            try:
                for row in self._pipeline(ray, items, backbone, images):
                    start, index = int(row['start']), int(row['index'])
                    part = pickle.loads(row['part'])
                    parts[start][index] = part
                    nodes[start].add(str(row['node']))
                    bar.update(len(part['rows']) + len(part['failed_rows']))
                    if len(parts[start]) < expected[start]:
                        continue
                    done_parts = parts.pop(start)
                    save_shard(build, start, join_parts(
                        [done_parts[i] for i in sorted(done_parts)], backbone.dim))
                    entries[start].update(done=True, nodes=sorted(nodes[start]),
                                          run=manifest['runs'])
                    _write_manifest(build, manifest)
                    saved += 1
                    crash_point(f'{SHARD_STEP}.{saved}')
            except Exception as err:     # noqa: B902 - Ray raises many types; one clear line
                if isinstance(err, MapError):
                    raise
                raise MapError(f'{build.parent}: the Ray build stopped after {saved} of '
                               f'{len(todo)} shards ({type(err).__name__}: '
                               f'{str(err).strip().splitlines()[-1] if str(err).strip() else ""}'
                               '); the saved shards are kept: run build-map again to resume'
                               ) from err
        missing = [s for s in todo if not entries[s]['done']]
        if missing:
            raise MapError(f'{build.parent}: the Ray job ended with {len(missing)} shards '
                           f'missing (first at row {missing[0]}); run build-map again')
        log.info('%s: %d shards embedded by Ray on %d node(s)', build, saved,
                 len(set().union(*nodes.values())))

    def _pipeline(self, ray: Any, items: list[dict[str, Any]], backbone: Backbone,
                  images: ImageConfig) -> Iterator[dict[str, Any]]:
        """Yield one row per batch: its shard, index, pickled ``embed_batch`` result, node."""
        cfg = self.cfg
        workers = cfg.workers or max(1, int(ray.cluster_resources().get('CPU', 1)
                                            // cfg.worker_cpus))
        loader = self.loader or partial(load_configured_backbone, self.backbone_cfg)
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        gpus = {'num_gpus': cfg.worker_gpus} if cfg.worker_gpus else {}
        ds = ds.map_batches(_Embedder, batch_size=1, batch_format='numpy',
                            fn_constructor_kwargs={'loader': loader,
                                                   'fingerprint': backbone.fingerprint,
                                                   'threads': cfg.worker_cpus,
                                                   'images': images},
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=cfg.worker_cpus, **gpus)
        log.info('Ray build: %d batches, %d embedding actors of %g CPU(s)', len(items),
                 workers, cfg.worker_cpus)
        yield from ds.iter_rows()


class _Embedder:
    """A Ray actor: loads the backbone once, then decodes and embeds batch after batch.

    Each batch's files are opened on the node that embeds them, under the local executor's
    decode policy. Decoding here rather than in separate Ray tasks keeps the cores for the
    backbone: a decoding task runs in a worker process that costs 2-3 s of CPU to start
    (importing Ray Data), and Ray stops idle workers after a second, so the tasks' workers were
    started again wave after wave (benchmarks/README.md, "Map building on Ray"); decoding a
    batch costs about 5 % of embedding it.
    """

    def __init__(self, loader: BackboneLoader, fingerprint: str, threads: float,
                 images: ImageConfig) -> None:
        import ray
        import torch
        torch.set_num_threads(max(1, int(threads)))
        self.backbone = loader()
        if self.backbone.fingerprint != fingerprint:
            raise MapError(f'worker {ray.get_runtime_context().get_node_id()[:12]}: its '
                           f"{self.backbone.name} differs from the driver's (fingerprint "
                           f'{self.backbone.fingerprint[:12]}, not {fingerprint[:12]}): give '
                           'every node the same weights and settings')
        self.node = ray.get_runtime_context().get_node_id()
        self.images = images

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = []
        for rows, paths in zip(batch['rows'], batch['paths']):
            group = [int(r) for r in rows]
            decoded = decode_group(dict(zip(group, (str(p) for p in paths))), group,
                                   self.images)
            parts.append(pickle.dumps(embed_batch(self.backbone, decoded), protocol=5))
        return {'start': batch['start'], 'index': batch['index'],
                'part': np.array(parts, dtype=object),
                'node': np.array([self.node] * len(parts))}


class _ray_session:    # noqa: N801 - used as a context manager, like a function
    """Connect to the cluster (or start a local one) for one build; leave it as it was."""

    def __init__(self, cfg: RayBuildConfig) -> None:
        self.cfg = cfg
        self.started = False
        self.saved: dict[str, Any] = {}
        self.usage_stats: str | None = None

    def __enter__(self) -> Any:
        self.usage_stats = os.environ.get(USAGE_STATS)
        os.environ[USAGE_STATS] = '0'     # before Ray is imported
        try:
            import ray
            import ray.data
        except ImportError as err:
            raise MapError(f'--executor ray needs Ray: pip install -r requirements.txt '
                           f'({err})') from err
        address = self.cfg.address or os.environ.get('RAY_ADDRESS', '')
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(include_dashboard=False, log_to_driver=False,
                             object_store_memory=self.cfg.object_store_mb * 2 ** 20)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise MapError(f'cannot start or reach the Ray cluster '
                               f'{address or "(local)"}: {err}') from err
            self.started = True
        context = ray.data.DataContext.get_current()
        self.saved = {k: getattr(context, k) for k in (
            'retried_map_errors', 'max_map_retries', 'enable_progress_bars',
            'wait_for_min_actors_s')}
        # a batch whose UDF raised is run again (up to max_retries) before the job fails
        context.retried_map_errors = True
        # the work starts once every actor is up, so it is spread over all of them (and a
        # cluster short of CPUs for the pool fails with one line instead of waiting forever)
        context.wait_for_min_actors_s = ACTOR_START_S
        context.max_map_retries = self.cfg.max_retries
        context.enable_progress_bars = False
        return ray

    def __exit__(self, *exc: object) -> None:
        import ray
        context = ray.data.DataContext.get_current()
        for key, value in self.saved.items():
            setattr(context, key, value)
        if self.started:
            ray.shutdown()
        if self.usage_stats is None:    # the caller's environment as it was
            os.environ.pop(USAGE_STATS, None)
        else:
            os.environ[USAGE_STATS] = self.usage_stats


def _read_manifest(build: Path) -> dict[str, Any]:
    """Return the saved manifest, or {} when there is none or it is unreadable."""
    try:
        return json.loads((build / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _write_manifest(build: Path, manifest: dict[str, Any]) -> None:
    with atomic_write(build / MANIFEST, 'w') as f:
        json.dump(manifest, f, indent=1)
