"""``aesvc-vpr demo``: the whole product on an embedded default, with no questions asked.

Everything runs from files this package writes itself, so it works with no internet, no weights
and no dataset. The backbone is DINOv2 where its weights are found locally and otherwise the
weights-free ``patchgrid`` baseline; the summary says which, and how to switch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import logging
from pathlib import Path
import time
from typing import Any, Sequence

import numpy as np

from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.config import BackboneConfig, HeadConfig, RecallConfig, TrainConfig
from aesvc_vpr.index.ranking import positives_within

log = logging.getLogger(__name__)

NODE_PREFIX = 64          # the prefix the live node searches with
NAME = 'demo'
HELP = ('generate a synthetic town, build its map and head, replay its queries through the '
        'live node, and score everything')


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults are the README's main job."""

    out: Path = Path('out/demo')
    n_db: int = 1000
    n_query: int = 300
    size: int = 224
    difficulty: float = 0.5
    seed: int = 0
    dims: tuple[int, ...] = (16, 32, 64, 128)
    rate: float = 2.0              # bag playback speed for the live node
    epochs: int = 40               # head student epochs at most
    model_name: str = 'auto'


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage, print the summary table and write ``summary.json`` into ``cfg.out``.

    Returns:
        The summary (also written to ``<out>/summary.json``).
    """
    from aesvc_vpr.data.town import make_town
    from aesvc_vpr.retrieval.encoder import Encoder
    from aesvc_vpr.retrieval.mapbuild import build_map

    started = time.perf_counter()
    out = cfg.out.resolve()
    stages: dict[str, float] = {}

    t0 = time.perf_counter()
    town = make_town(out / 'town', cfg.n_db, cfg.n_query, cfg.size, cfg.difficulty, cfg.seed,
                     overwrite=True)
    stages['town_s'] = time.perf_counter() - t0

    encoder = Encoder.load(BackboneConfig(model_name=cfg.model_name))
    backbone = encoder.backbone
    t0 = time.perf_counter()
    train = (HeadConfig(), TrainConfig(epochs=cfg.epochs, seed=cfg.seed))
    mapdb = build_map(town.database, out / 'map', backbone, train=train, source=str(town.root))
    stages['map_and_head_s'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    offline = _offline_scores(mapdb, town.queries, encoder.with_head(mapdb.head_file), cfg.dims)
    stages['offline_eval_s'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    node = _live_node(out, mapdb, town.bag_path, cfg.rate)
    stages['live_node_s'] = time.perf_counter() - t0

    summary = {
        'out': str(out),
        'backbone': backbone.name,
        'backbone_note': _backbone_note(backbone.name),
        'town': {'database': len(town.database), 'queries': len(town.queries),
                 'size': cfg.size, 'difficulty': cfg.difficulty, 'seed': cfg.seed},
        'chance_recall_at_1': _chance(mapdb.utm, town.queries.utm),
        'offline': offline,
        'node': node,
        'stages_s': {k: round(v, 1) for k, v in stages.items()},
        'total_s': round(time.perf_counter() - started, 1),
        'files': {'map': str(mapdb.root), 'head': mapdb.head_file,
                  'node_report': str(out / 'node_replay' / 'report.json'),
                  'trajectory_png': str(out / 'node_replay' / 'trajectory.png'),
                  'offline_report': str(out / 'offline_eval.json')},
    }
    with atomic_write(out / 'summary.json', 'w') as f:
        json.dump(summary, f, indent=2)
        f.write('\n')
    print(format_summary(summary))
    return summary


def _offline_scores(mapdb: Any, queries: Any, encoder: Any,
                    dims: Sequence[int]) -> dict[str, Any]:
    """Recall of raw, PCA, PCA-whitening, AE-SVC and (SS)2D embeddings, and search speed."""
    from aesvc_vpr.backbone.feed import embed_paths
    from aesvc_vpr.evaluation.map_eval import evaluate_representations, write_json
    from aesvc_vpr.head.baselines import AesvcEncoder, PCA

    projector = encoder.projector
    aesvc = AesvcEncoder(projector.head.meta.standardisation, projector.head.autoencoder)
    query_raw, rows, _ = embed_paths(encoder.backbone, queries.paths, 8, 'queries', True)
    database_raw = mapdb.raw.astype(np.float32)
    pca, pcaw = PCA.fit(database_raw), PCA.fit(database_raw, whiten=True)
    representations = {
        'raw': (database_raw, query_raw),
        'pca': (pca.project(database_raw), pca.project(query_raw)),
        'pcaw': (pcaw.project(database_raw), pcaw.project(query_raw)),
        'aesvc': (aesvc.project(database_raw), aesvc.project(query_raw)),
        'ss2d': (mapdb.embeddings, projector.project(query_raw)),
    }
    report = evaluate_representations(mapdb.utm, queries.utm[rows], representations, dims,
                                      RecallConfig())
    write_json(report, mapdb.root.parent / 'offline_eval.json')
    small, full = min(dims), mapdb.embeddings.shape[1]
    report['search_speed'] = search_speed(mapdb.embeddings, projector.project(query_raw),
                                          small, full)
    return report


def search_speed(database: np.ndarray, queries: np.ndarray, small: int, full: int,
                 repeats: int = 3) -> dict[str, float]:
    """Median single-query search time at two prefix sizes, measured in one run."""
    from aesvc_vpr.index.prefix_index import PrefixIndex

    times = {}
    for dim in (small, full):
        index = PrefixIndex(database, dim)
        index.search(queries[:1], 10)                     # warm-up
        samples = []
        for _ in range(repeats):
            for q in queries:
                t0 = time.perf_counter()
                index.search(q[None], 10)
                samples.append(time.perf_counter() - t0)
        times[dim] = float(np.median(samples))
    return {'small_dim': small, 'full_dim': full, 'small_ms': 1e3 * times[small],
            'full_ms': 1e3 * times[full], 'speedup': times[full] / max(times[small], 1e-12)}


def _live_node(out: Path, mapdb: Any, bag: Path, rate: float) -> dict[str, Any]:
    """Replay the query bag through the real ROS 2 node (a subprocess) with ``bag-play``."""
    from aesvc_vpr.cli import main as cli_main

    report_dir = out / 'node_replay'
    code = cli_main(['bag-play', '--map', str(mapdb.root), '--head', mapdb.head_file,
                     '--bag', str(bag), '--prefix-dim', str(NODE_PREFIX), '--rate', f'{rate:g}',
                     '--out', str(report_dir)])
    if code != 0:
        return {'error': f'bag-play exited with {code}'}
    report = json.loads((report_dir / 'report.json').read_text())
    return {key: report[key] for key in ('recall', 'queries', 'answered', 'dropped', 'latency_ms')}


def _chance(map_utm: np.ndarray, query_utm: np.ndarray, radius_m: float = 25.0) -> float:
    """Recall@1 of a random guess: the mean fraction of the map within the radius of a query."""
    counts = np.array([len(p) for p in positives_within(map_utm, query_utm, radius_m)])
    return float(counts.mean() / max(len(map_utm), 1))


def _backbone_note(name: str) -> str:
    if name == 'patchgrid':
        return ('weights-free patchgrid baseline (no DINOv2 weights found locally); for DINOv2 '
                'put dinov2_vits14_pretrain.pth in $TORCH_HOME/hub/checkpoints or pass '
                '--model vit_small_patch14_dinov2 --weights FILE (docs/backbone.md)')
    return f'DINOv2 ({name}) from local weights; --model patchgrid runs the weights-free baseline'


def format_summary(summary: dict[str, Any]) -> str:
    """Format the closing table: recall per method and size, search speed, node latency."""
    offline, node = summary['offline'], summary['node']
    lines = [f'backbone: {summary["backbone_note"]}',
             f'town: {summary["town"]["database"]} map images, {summary["town"]["queries"]} '
             f'queries; chance Recall@1 {100 * summary["chance_recall_at_1"]:.1f}%', '',
             f'{"method":<8}{"dim":>6}{"R@1":>8}{"R@5":>8}{"mean cos":>10}{"Var*d":>8}']
    for row in offline['rows']:
        lines.append(f'{row["method"]:<8}{row["dim"]:>6}{100 * row["recall"]["1"]:>8.1f}'
                     f'{100 * row["recall"]["5"]:>8.1f}{row["mean_cos"]:>10.3f}'
                     f'{row["var_cos_d"]:>8.2f}')
    speed = offline['search_speed']
    # a 1,000-entry map fits in cache, so the ratio is near 1 and may fall either side of it
    verdict = (f'{speed["speedup"]:.1f}x faster' if speed['speedup'] >= 1.05 else
               f'{speed["speedup"]:.2f}x: no gain at this map size')
    lines += ['', f'search, one query: prefix {speed["small_dim"]} {speed["small_ms"]:.3f} ms vs '
                  f'full {speed["full_dim"]} {speed["full_ms"]:.3f} ms ({verdict})']
    if 'error' in node:
        lines.append(f'live node: {node["error"]}')
    else:
        latency = node['latency_ms']
        recall_1 = 100 * node['recall']['R@1']
        lines.append(f'live node (prefix {NODE_PREFIX}): Recall@1 {recall_1:.1f}%, answered '
                     f'{node["answered"]}/{node["queries"]}, latency ' + ', '.join(
                         f'{kind} p50 {v["median"]:.1f} / p95 {v["p95"]:.1f} ms'
                         for kind, v in latency.items()))
    lines += [f'stages: {summary["stages_s"]}, total {summary["total_s"]} s',
              f'everything is in {summary["out"]} (summary.json, node_replay/trajectory.png)']
    return '\n'.join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's size flags; the defaults are what the README runs."""
    d = DemoConfig()
    parser.add_argument('--out', type=Path, default=d.out, help='output folder (%(default)s)')
    parser.add_argument('--db', type=int, default=d.n_db, help='map images (%(default)s)')
    parser.add_argument('--queries', type=int, default=d.n_query, help='query images')
    parser.add_argument('--size', type=int, default=d.size, help='image side in pixels')
    parser.add_argument('--difficulty', type=float, default=d.difficulty,
                        help='query appearance and pose change, 0..2 (%(default)s)')
    parser.add_argument('--seed', type=int, default=d.seed)
    parser.add_argument('--dims', type=int, nargs='+', default=list(d.dims),
                        help='prefix sizes in the table (%(default)s)')
    parser.add_argument('--rate', type=float, default=d.rate,
                        help='bag playback speed for the live node (%(default)s x real time)')
    parser.add_argument('--epochs', type=int, default=d.epochs, help='head training epochs')
    parser.add_argument('--model', default=d.model_name,
                        help="backbone: 'auto' (DINOv2 if its weights are found, else "
                             "'patchgrid'), 'patchgrid', or a timm DINOv2 name")


def run(args: argparse.Namespace) -> int:
    """Run the demo; it returns 1 if the live node did not answer."""
    summary = run_demo(DemoConfig(args.out, args.db, args.queries, args.size, args.difficulty,
                                  args.seed, tuple(args.dims), args.rate, args.epochs,
                                  args.model))
    return 0 if summary['node'].get('answered', 0) > 0 else 1
