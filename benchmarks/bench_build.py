"""Map-build throughput against the backbone's own: does decoding overlap embedding.

Three ways through the same JPEG files, interleaved over ``--repeats`` rounds:
  backbone  images decoded beforehand (untimed), then only ``backbone.embed`` in batches: the
            ceiling and the baseline;
  build     ``build_map`` from the files (decoding in its background thread, chunks saved);
  serial    decode a batch, embed it, repeat, in one thread: what the build would cost without
            the overlap.
One JSON line with images/s of each (median over rounds), build/backbone (goal >= 0.9) and
serial/backbone. Without local DINOv2 weights, ``--random-weights`` runs the same architecture
with random weights: the descriptors mean nothing, the compute is the same.

    .venv/bin/python benchmarks/bench_build.py --model vit_small_patch14_dinov2 --random-weights
    .venv/bin/python benchmarks/bench_build.py --model patchgrid --images 400

``--ray`` instead compares the executors on the same cores, in one run: ``build_map`` with the
local executor (torch on every core) against the Ray executor (a local cluster of all cores,
``--ray-workers`` actors of ``cores / workers`` CPUs each). Each is timed at ``--images`` and
twice as many, so the marginal rate (extra images / extra seconds) leaves out the fixed costs
(the actors' start and backbone load, the merge); both rates, ray/local ratios (goal >= 0.85)
and the Ray rate per worker, as one JSON line:

    .venv/bin/python benchmarks/bench_build.py --ray --model vit_small_patch14_dinov2 \
        --random-weights --images 48 --repeats 2

``--http`` instead runs ``build_map`` (local executor) over the same files twice per round: from
their paths, and as URLs served by ``python -m http.server`` on loopback in a process of its own
(HTTP/1.1, keep-alive), fetched through fsspec. One JSON line with both rates and http/paths:
what fetching costs when the network is no bottleneck (fsspec, the request, the fetch threads).

    .venv/bin/python benchmarks/bench_build.py --http --model patchgrid --images 200
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import cv2
import numpy as np
import torch

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.retrieval.mapbuild import build_map


def make_backbone(args: argparse.Namespace) -> Backbone:
    """Build the configured backbone, or its architecture with random weights."""
    from aesvc_vpr.data.town.views import town_calibration
    cfg = BackboneConfig(model_name=args.model, batch_size=args.batch_size, runtime=args.runtime)
    if not args.random_weights:
        from aesvc_vpr.backbone.registry import load_backbone
        return load_backbone(cfg, town_calibration())
    from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
    from aesvc_vpr.backbone.dinov2_archs import MODELS
    from aesvc_vpr.backbone.weights import random_weights
    return DinoV2Backbone(cfg, random_weights(MODELS[args.model]), town_calibration())


def write_images(folder: Path, count: int, width: int, height: int) -> GeoImageSet:
    """``count`` textured JPEGs (quality 90) at ``width`` x ``height``."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                 (7, 7), 0)
        path = folder / f'{i:05d}.jpg'
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(str(path))
    utm = np.stack([np.arange(count) * 5.0, np.zeros(count)], axis=1)
    return GeoImageSet(tuple(paths), utm, '17T')


def batches(items: list, size: int) -> list[list]:
    """Consecutive slices of ``size``."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def wait_for_pool_exit(timeout_s: float = 120.0) -> None:
    """Wait until the Ray build's actors have exited.

    Their teardown (about 1.3 s of CPU each, after ``build_map`` returns) would otherwise be
    charged to the next build.
    """
    import psutil      # a dependency of Ray
    actors = []
    for proc in psutil.process_iter(['cmdline']):
        if 'MapWorker' in ' '.join(proc.info['cmdline'] or ()):
            actors.append(proc)
    _, alive = psutil.wait_procs(actors, timeout=timeout_s)
    if alive:
        raise SystemExit(f'{len(alive)} Ray actors still running after {timeout_s} s')


def compare_executors(args: argparse.Namespace, backbone: Backbone, work: Path) -> None:
    """Time the local and the Ray executor on the same images and cores; print one line."""
    from functools import partial
    os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
    import ray
    from aesvc_vpr.config import RayBuildConfig
    from aesvc_vpr.retrieval.ray_build import RayExecutor
    cpus = os.cpu_count() or 1
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=512 * 2 ** 20)
    try:
        every = write_images(work, 2 * args.images, args.width, args.height)
        sets = {n: every.subset(range(n)) for n in (args.images, 2 * args.images)}
        cfg = RayBuildConfig(workers=args.ray_workers, worker_cpus=cpus / args.ray_workers)
        ray_executor = RayExecutor(BackboneConfig(model_name=args.model, runtime=args.runtime),
                                   cfg, loader=partial(make_backbone, args))
        executors = {'local': None, 'ray': ray_executor}
        seconds: dict[str, dict[int, list[float]]] = {k: {n: [] for n in sets} for k in executors}
        for round_ in range(args.repeats):     # executors alternate build by build
            for n, images in sets.items():
                for name, executor in executors.items():
                    start = time.perf_counter()
                    build_map(images, work / f'{name}{n}_{round_}', backbone,
                              batch_size=args.batch_size, chunk_size=args.chunk_size,
                              progress=False, executor=executor)
                    seconds[name][n].append(time.perf_counter() - start)
                    if executor is not None:
                        wait_for_pool_exit()
    finally:
        ray.shutdown()
    small, large = sorted(sets)
    median = {k: {n: float(np.median(v)) for n, v in per.items()} for k, per in seconds.items()}
    whole = {k: large / m[large] for k, m in median.items()}
    marginal = {k: (large - small) / max(m[large] - m[small], 1e-9) for k, m in median.items()}
    print(json.dumps({
        'bench': 'build-executors', 'backbone': backbone.name,
        'random_weights': args.random_weights, 'runtime': args.runtime,
        'images': [small, large], 'size': [args.width, args.height],
        'batch_size': args.batch_size, 'chunk_size': args.chunk_size, 'repeats': args.repeats,
        'cpus': cpus, 'local_torch_threads': torch.get_num_threads(),
        'ray_workers': args.ray_workers, 'ray_worker_cpus': cfg.worker_cpus,
        'local_images_per_s': round(whole['local'], 2),
        'ray_images_per_s': round(whole['ray'], 2),
        'ray_over_local': round(whole['ray'] / whole['local'], 3),
        'local_marginal_images_per_s': round(marginal['local'], 2),
        'ray_marginal_images_per_s': round(marginal['ray'], 2),
        'ray_over_local_marginal': round(marginal['ray'] / marginal['local'], 3),
        'ray_marginal_images_per_s_per_worker': round(marginal['ray'] / args.ray_workers, 2),
        'seconds': {k: {str(n): [round(x, 2) for x in v] for n, v in per.items()}
                    for k, per in seconds.items()},
        **provenance()}), flush=True)


@contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` with ``python -m http.server`` on a free loopback port; yield its URL."""
    server = subprocess.Popen(
        [sys.executable, '-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--protocol',
         'HTTP/1.1', '--directory', str(folder)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()         # 'Serving HTTP on 127.0.0.1 port N (...) ...'
        port = re.search(r' port (\d+)', line)
        if port is None:
            raise RuntimeError(f'http.server did not start: {line!r}')
        yield f'http://127.0.0.1:{port[1]}'
    finally:
        server.terminate()
        server.wait()


def compare_http(args: argparse.Namespace, backbone: Backbone, work: Path) -> None:
    """Time build_map from local paths and from the same files over loopback HTTP; one line."""
    folder = work / 'images'
    folder.mkdir()
    images = write_images(folder, args.images, args.width, args.height)
    backbone.embed([read_rgb(p) for p in images.paths[:args.batch_size]])      # warm-up
    seconds: dict[str, list[float]] = {'paths': [], 'http': []}
    with http_server(folder) as base:
        urls = GeoImageSet(tuple(f'{base}/{Path(p).name}' for p in images.paths), images.utm,
                           images.utm_zone)
        sets = {'paths': images, 'http': urls}
        for round_ in range(args.repeats):     # the two alternate build by build
            for name, geo in sets.items():
                start = time.perf_counter()
                mapdb = build_map(geo, work / f'{name}{round_}', backbone,
                                  batch_size=args.batch_size, chunk_size=args.chunk_size,
                                  progress=False)
                seconds[name].append(time.perf_counter() - start)
                if mapdb.count != args.images:
                    raise RuntimeError(f'{name}: {len(mapdb.failed_images)} images failed: '
                                       f'{mapdb.failed_images[:1]}')
    rate = {k: args.images / float(np.median(v)) for k, v in seconds.items()}
    print(json.dumps({
        'bench': 'build-http', 'backbone': backbone.name, 'random_weights': args.random_weights,
        'runtime': args.runtime, 'images': args.images, 'size': [args.width, args.height],
        'batch_size': args.batch_size, 'chunk_size': args.chunk_size, 'repeats': args.repeats,
        'torch_threads': torch.get_num_threads(), 'cpus': os.cpu_count(),
        'bytes_per_image': round(sum(Path(p).stat().st_size for p in images.paths)
                                 / args.images),
        'paths_images_per_s': round(rate['paths'], 2),
        'http_images_per_s': round(rate['http'], 2),
        'http_over_paths': round(rate['http'] / rate['paths'], 3),
        'per_round_s': {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        **provenance()}), flush=True)


def main() -> None:
    """Parse flags and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='auto')
    parser.add_argument('--random-weights', action='store_true')
    parser.add_argument('--runtime', default='torch-fp32')
    parser.add_argument('--images', type=int, default=96)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--chunk-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--ray', action='store_true',
                        help='compare the local and the Ray executor instead')
    parser.add_argument('--ray-workers', type=int, default=2,
                        help='Ray actors sharing the cores (with --ray)')
    parser.add_argument('--http', action='store_true',
                        help='compare a build from local paths with one over loopback HTTP')
    args = parser.parse_args()
    backbone = make_backbone(args)
    work = Path(tempfile.mkdtemp(prefix='bench_build_'))
    if args.ray or args.http:
        try:
            (compare_executors if args.ray else compare_http)(args, backbone, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        images = write_images(work, args.images, args.width, args.height)
        decoded = [read_rgb(p) for p in images.paths]
        decode_ms = []
        for path in images.paths[:32]:
            start = time.perf_counter()
            read_rgb(path)
            decode_ms.append((time.perf_counter() - start) * 1e3)
        backbone.embed(decoded[:args.batch_size])                     # warm-up
        seconds: dict[str, list[float]] = {'backbone': [], 'build': [], 'serial': []}
        for round_ in range(args.repeats):
            start = time.perf_counter()
            for batch in batches(decoded, args.batch_size):
                backbone.embed(batch)
            seconds['backbone'].append(time.perf_counter() - start)

            start = time.perf_counter()
            build_map(images, work / f'map{round_}', backbone, batch_size=args.batch_size,
                      chunk_size=args.chunk_size, progress=False)
            seconds['build'].append(time.perf_counter() - start)

            start = time.perf_counter()
            for batch in batches(list(images.paths), args.batch_size):
                backbone.embed([read_rgb(p) for p in batch])
            seconds['serial'].append(time.perf_counter() - start)
        rate = {k: args.images / float(np.median(v)) for k, v in seconds.items()}
        print(json.dumps({
            'bench': 'build', 'backbone': backbone.name, 'random_weights': args.random_weights,
            'runtime': args.runtime, 'images': args.images, 'size': [args.width, args.height],
            'batch_size': args.batch_size, 'chunk_size': args.chunk_size,
            'repeats': args.repeats, 'torch_threads': torch.get_num_threads(),
            'cpus': os.cpu_count(),
            'decode_median_ms': round(float(np.median(decode_ms)), 2),
            'decode_p95_ms': round(float(np.percentile(decode_ms, 95)), 2),
            'backbone_images_per_s': round(rate['backbone'], 2),
            'build_images_per_s': round(rate['build'], 2),
            'serial_images_per_s': round(rate['serial'], 2),
            'build_over_backbone': round(rate['build'] / rate['backbone'], 3),
            'serial_over_backbone': round(rate['serial'] / rate['backbone'], 3),
            'per_round_s': {k: [round(s, 3) for s in v] for k, v in seconds.items()},
            **provenance()}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
