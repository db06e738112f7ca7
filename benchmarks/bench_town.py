"""Synthetic town generation: make_town wall time with 2 workers against 1, per-image stages.

One JSON line per worker count (wall and CPU seconds, images/s, the 1-worker run as baseline and
the speed-up), one for the per-image stages (render, appearance, JPEG; median and p95 ms, timed
in-process), and one for retrieval on the generated town (PatchGrid + cosine nearest neighbour,
Recall@1/5 within 25 m against chance). CPU seconds are given for the 1-worker run (all work in
this process): unlike wall time they stay comparable on a shared machine.

    .venv/bin/python benchmarks/bench_town.py --db 1000 --queries 300 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import resource
import tempfile
import time

import cv2
import numpy as np

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.data.town import appearance, make_town, routes
from aesvc_vpr.data.town.layout import build_town, TownSpec
from aesvc_vpr.data.town.render import Camera, render


def cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def stage_times(size: int, count: int, seed: int) -> dict[str, list[float]]:
    """Milliseconds per image for render, appearance and JPEG encoding, in this process."""
    town = build_town(TownSpec(seed=seed))
    circuit = routes.survey_route(town, np.random.default_rng(seed))
    poses = routes.sample_route(town, circuit, count, routes.route_length_m(town, circuit) / count)
    conditions = appearance.query_conditions(count, 0.5, np.random.default_rng(seed))
    camera = Camera(width=size, height=size)
    out: dict[str, list[float]] = {'render': [], 'appearance': [], 'jpeg': []}
    for i in range(count):
        t0 = time.perf_counter()
        frame = render(town, *poses.xy_m[i], poses.yaw_rad[i], camera)
        t1 = time.perf_counter()
        image, _ = appearance.apply_condition(frame, conditions[i], np.random.default_rng(i))
        t2 = time.perf_counter()
        cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        t3 = time.perf_counter()
        for key, ms in zip(out, ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)):
            out[key].append(ms)
    return out


def retrieval(town) -> dict[str, float]:
    """Recall@1/5 within 25 m for PatchGrid + cosine NN, and the chance level."""
    backbone = PatchGridBackbone()

    def embed(paths: tuple[str, ...]) -> np.ndarray:
        rows = backbone.embed([cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)
    order = np.argsort(-(embed(town.queries.paths) @ embed(town.database.paths).T), axis=1)
    within = np.linalg.norm(town.queries.utm[:, None] - town.database.utm[None], axis=2) < 25.0
    hits = np.take_along_axis(within, order[:, :5], axis=1)
    return {'recall_at_1': round(float(hits[:, 0].mean()), 4),
            'recall_at_5': round(float(hits.any(axis=1).mean()), 4),
            'chance_at_1': round(float(within.mean()), 4)}


def main() -> None:
    """Print the JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--db', type=int, default=1000)
    parser.add_argument('--queries', type=int, default=300)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--difficulty', type=float, default=0.5)
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--stage-images', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    common = {'bench': 'town', 'size': args.size, 'cpus': os.cpu_count(),
              'load_avg_1m': round(os.getloadavg()[0], 2), 'machine': platform.machine(),
              **provenance()}
    with tempfile.TemporaryDirectory(prefix='bench_town_') as tmp:
        make_town(Path(tmp) / 'warmup', n_db=20, n_query=5, size=64, seed=args.seed, workers=1)
        baseline_s = None
        for workers in sorted(args.workers):
            cpu0, start = cpu_seconds(), time.perf_counter()
            town = make_town(Path(tmp) / f'w{workers}', n_db=args.db, n_query=args.queries,
                             size=args.size, difficulty=args.difficulty, seed=args.seed,
                             workers=workers)
            wall = time.perf_counter() - start
            baseline_s = baseline_s or wall
            images = args.db + args.queries
            print(json.dumps({**common, 'config': f'make_town workers={workers}', 'db': args.db,
                              'queries': args.queries, 'wall_s': round(wall, 2),
                              # forkserver workers are not our children: count CPU only
                              # when everything ran in this process
                              'cpu_s': round(cpu_seconds() - cpu0, 2) if workers == 1 else None,
                              'images_per_s': round(images / wall, 1),
                              'baseline': f'workers={min(args.workers)}',
                              'baseline_wall_s': round(baseline_s, 2),
                              'speedup': round(baseline_s / wall, 3),
                              'load_avg_1m_after': round(os.getloadavg()[0], 2)}), flush=True)
        print(json.dumps({**common, 'config': f'retrieval difficulty={args.difficulty}',
                          **retrieval(town)}), flush=True)
    stages = stage_times(args.size, args.stage_images, args.seed)
    row = {**common, 'config': 'per-image stages (1 process)', 'images': args.stage_images}
    for key, ms in stages.items():
        row[f'{key}_median_ms'] = round(float(np.median(ms)), 3)
        row[f'{key}_p95_ms'] = round(float(np.percentile(ms, 95)), 3)
    print(json.dumps(row), flush=True)


if __name__ == '__main__':
    main()
