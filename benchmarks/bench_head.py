r"""Projection head: retrieval quality of raw, PCA, AE-SVC and (SS)2D prefixes, and training cost.

Synthetic mode (default) draws "foundation-model-like" embeddings (aesvc_vpr.synthetic_embeddings:
2,000 places x 5 database images = 10,000 x 384, plus 2,000 queries), trains a head on the
database rows only (no labels), and prints one JSON line per (method, prefix size) with
Recall@1/5, the raw-truncation baseline at the same size and the ratio. Further lines give the
cosine statistics over random pairs before and after AE-SVC, the training time, and the
single-query projection latency of the (SS)2D Projector against PCA.

Image mode (``--images DIR``) embeds DIR/ref (database) and DIR/query with a backbone and does
the same. Ground truth: DIR/ground_truth_new.npy (VPR-Bench: [query, [ref indices]] rows) if
present, else index alignment within ``--tolerance`` frames.

    .venv/bin/python benchmarks/bench_head.py --ssd
    .venv/bin/python benchmarks/bench_head.py --images ../shared/data/vprbench_corridor \\
        --model patchgrid --latent-dim 64 --sizes 8,16,32,64
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import tempfile
import time

import numpy as np
import torch

from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import BackboneConfig, HeadConfig, TrainConfig
from aesvc_vpr.data.synthetic_embeddings import generate, SyntheticConfig
from aesvc_vpr.head.baselines import AesvcEncoder, fit_aesvc_per_size, fit_ssd, PCA, Truncation
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.head.quality import cosine_stats, prefix_recall
from aesvc_vpr.head.training import fit_head, write_trained
from aesvc_vpr.index.ranking import positives_within

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def emit(record: dict, common: dict) -> None:
    """Print one JSON line."""
    print(json.dumps({'bench': 'head', **record, **common}), flush=True)


def synthetic_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list, str]:
    """(database, queries, positives within 25 m, source description)."""
    cfg = SyntheticConfig(dim=args.dim, places=args.places, db_per_place=args.db_per_place,
                          seed=args.seed)
    data = generate(cfg)
    return (data.database, data.queries, positives_within(data.db_utm, data.query_utm, 25.0),
            f'synthetic {cfg}')


def image_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list, str]:
    """Embed DIR/ref and DIR/query with the chosen backbone; positives from ground truth."""
    import cv2

    from aesvc_vpr.backbone.registry import load_backbone
    root = Path(args.images)
    backbone = load_backbone(BackboneConfig(model_name=args.model, weights=args.weights,
                                            batch_size=8))

    def embed(folder: Path) -> np.ndarray:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files]
        return np.concatenate([backbone.embed(images[i:i + 8]) for i in range(0, len(files), 8)])

    database, queries = embed(root / 'ref'), embed(root / 'query')
    truth = root / 'ground_truth_new.npy'
    if truth.is_file():
        rows = np.load(truth, allow_pickle=True)
        positives = [np.sort(np.asarray(refs, np.int64)) for _, refs in rows]
    else:
        positives = [np.arange(max(0, i - args.tolerance), min(len(database), i + args.tolerance
                                                               + 1)) for i in range(len(queries))]
    return database, queries, positives, f'images {root} backbone {backbone.name}'


def recall_rows(methods: dict, sizes: list[int], data: tuple, common: dict) -> None:
    """One line per (method, size) with the raw-truncation baseline at the same size."""
    database, queries, positives, _ = data
    raw = Truncation(database.shape[1])
    for size in sizes:
        base = prefix_recall(raw, size, database, queries, positives, (1, 5))
        for name, method in methods.items():
            if size > method.output_dim or (hasattr(method, 'members')
                                            and size not in method.members):
                continue
            found = prefix_recall(method, size, database, queries, positives, (1, 5))
            emit({'kind': 'recall', 'method': name, 'size': size, 'recall@1': found[1],
                  'recall@5': found[5], 'baseline': 'raw-truncation', 'baseline_recall@1': base[1],
                  'baseline_recall@5': base[5],
                  'ratio_recall@1': round(found[1] / base[1], 3) if base[1] else None}, common)


def latency_rows(projector: Projector, pca: PCA, queries: np.ndarray, repeats: int,
                 common: dict) -> None:
    """Single-query projection latency of the (SS)2D Projector against PCA, after warm-up."""
    def times(fn) -> np.ndarray:
        for row in queries[:20]:
            fn(row[None])
        samples = []
        for i in range(repeats):
            start = time.perf_counter()
            fn(queries[i % len(queries)][None])
            samples.append(time.perf_counter() - start)
        return np.percentile(np.asarray(samples) * 1e3, [50, 95])

    ours, base = times(projector.project), times(pca.project)
    emit({'kind': 'latency', 'method': 'ss2d-projector', 'batch': 1,
          'median_ms': round(float(ours[0]), 4), 'p95_ms': round(float(ours[1]), 4),
          'baseline': pca.name, 'baseline_median_ms': round(float(base[0]), 4),
          'baseline_p95_ms': round(float(base[1]), 4),
          'ratio_median': round(float(ours[0] / base[0]), 2)}, common)


def main() -> None:
    """Parse flags, train, measure, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', default='', help='folder with ref/ and query/ (image mode)')
    parser.add_argument('--model', default='patchgrid', help='backbone for image mode')
    parser.add_argument('--weights', default='', help='backbone weights file or folder')
    parser.add_argument('--tolerance', type=int, default=0, help='index-aligned GT tolerance')
    parser.add_argument('--places', type=int, default=2000)
    parser.add_argument('--db-per-place', type=int, default=5)
    parser.add_argument('--dim', type=int, default=384)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--sizes', default='16,32,64,128,256')
    parser.add_argument('--latent-dim', type=int, default=256)
    parser.add_argument('--epochs', type=int, default=TrainConfig.epochs)
    parser.add_argument('--threads', type=int, default=TrainConfig.threads)
    parser.add_argument('--ssd', action='store_true', help='also train SSD (one student per size)')
    parser.add_argument('--aesvc-per-size', action='store_true',
                        help='also train one AE-SVC per size')
    parser.add_argument('--latency-repeats', type=int, default=500)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    sizes = [int(s) for s in args.sizes.split(',')]
    data = image_data(args) if args.images else synthetic_data(args)
    database, queries, _, source = data
    head_cfg = HeadConfig(latent_dim=args.latent_dim, prefix_sizes=tuple(sorted(
        {s for s in (8, *sizes) if s <= args.latent_dim})))
    train_cfg = TrainConfig(epochs=args.epochs, threads=args.threads, seed=args.seed)
    common = {'source': source, 'n_database': len(database), 'n_queries': len(queries),
              'input_dim': int(database.shape[1]), 'threads': args.threads,
              'device': 'cpu', **provenance()}

    wall, cpu = time.perf_counter(), time.process_time()
    head = fit_head(database, head_cfg, train_cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    emit({'kind': 'train', 'rows': len(database), 'wall_s': round(wall, 1),
          'cpu_s': round(cpu, 1), 'load_avg_1m': round(os.getloadavg()[0], 2),
          'report': head.report, 'head': str(head_cfg), 'train': str(train_cfg)}, common)

    with tempfile.TemporaryDirectory() as tmp:
        path = write_trained(head, database, args.model if args.images else 'synthetic',
                             head_cfg, train_cfg, Path(tmp) / 'head.safetensors')
        projector = Projector.load(path)
    aesvc = AesvcEncoder(head.standardisation, head.autoencoder)
    methods = {'raw-truncation': Truncation(database.shape[1]), 'pca': PCA.fit(database),
               'pca-whitened': PCA.fit(database, whiten=True),
               'aesvc-truncated': aesvc, 'ss2d': projector}
    if args.ssd:
        methods['ssd'] = fit_ssd(database, head, sizes, head_cfg, train_cfg)
    if args.aesvc_per_size:
        methods['aesvc-per-size'] = fit_aesvc_per_size(database, sizes, head_cfg, train_cfg)

    for name, rows in (('raw', database), ('aesvc', aesvc.project(database)),
                       ('ss2d', projector.project(database))):
        mean, var = cosine_stats(rows)
        emit({'kind': 'cosine', 'embedding': name, 'dim': int(rows.shape[1]),
              'mean_cos': round(mean, 5), 'var_cos': round(var, 6),
              'var_times_dim': round(var * rows.shape[1], 3)}, common)
    recall_rows(methods, sizes, data, common)
    latency_rows(projector, methods['pca-whitened'], queries, args.latency_repeats, common)


if __name__ == '__main__':
    main()
