r"""Projection head against closed-form baselines on real and rendered images, with a verdict.

For each set, the map's raw embeddings train the head (with the map's geotags choosing epochs,
never the queries) and fit the baselines; the queries are used only to score. One JSON line per
(set, method, size) gives Recall@1/5, mAP@4, and the mean cosine and Var(cos) x size over
random pairs of map rows. Then per set:

- ``goal1`` lines: at each size, the head's Recall@1 against the best of raw truncation, PCA,
  PCA-whitening and partial whitening (power tuned per size on the map's own rows), passing
  within 0.5 points; with the paired bootstrap standard error of the difference;
- ``goal2``: the head at its largest prefix against the raw descriptor at full size;
- ``goal3``: the teacher on held-out map rows (K folds, each teacher fitted without its fold):
  mean cosine, Var(cos) x d, and the covariance eigenvalues, sample and cross-validated
  (axes from one half of the rows, variances measured on the other);
- ``goal4``: the head's mean cosine on the map rows at every prefix.

Sets: ``town`` (the demo's: 1,000 map and 300 query images, patchgrid), ``nordland``
(../shared/data/nordland_dev, summer map and winter queries, patchgrid) and ``synthetic``.

    .venv/bin/python benchmarks/bench_head.py --sets town nordland
    .venv/bin/python benchmarks/bench_head.py --sets synthetic --ssd
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
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.head.baselines import (AesvcEncoder, fit_partial_whitening, fit_ssd, PCA,
                                      Truncation)
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.head.quality import cosine_stats
from aesvc_vpr.head.training import fit_autoencoder, fit_head, prepare, write_trained
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import map_at_k, positives_within, recall_at_n, relevance

REPO = Path(__file__).resolve().parents[1]
SIZES = (16, 32, 64, 128, 256)
TOLERANCE = 0.5        # points of Recall@1 the head may trail the best baseline by


def emit(record: dict, common: dict) -> None:
    """Print one JSON line."""
    print(json.dumps({'bench': 'head', **record, **common}), flush=True)


def embed_set(name: str, args: argparse.Namespace) -> tuple:
    """(map raw, map utm, query raw, query utm) of one set, embedded with patchgrid."""
    if name == 'synthetic':
        from aesvc_vpr.data.synthetic_embeddings import generate, SyntheticConfig
        data = generate(SyntheticConfig(seed=args.seed))
        return data.database, data.db_utm, data.queries, data.query_utm
    from aesvc_vpr.backbone.feed import embed_paths
    from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
    if name == 'town':
        from aesvc_vpr.data.town import make_town
        town = make_town(Path(args.cache) / 'town', 1000, 300, 224, 0.5, 0, overwrite=True)
        database, queries = town.database, town.queries
    else:
        from aesvc_vpr.data.datasets import load_dataset
        root = Path(os.environ.get('AESVC_VPR_DATA', REPO.parent / 'shared' / 'data'))
        dataset = load_dataset(root / 'nordland_dev' / 'nordland_dev.csv')
        database, queries = dataset.database, dataset.queries
    backbone = PatchGridBackbone()
    db, db_rows, _ = embed_paths(backbone, database.paths, 32, 'map', False)
    q, q_rows, _ = embed_paths(backbone, queries.paths, 32, 'queries', False)
    return db, database.utm[db_rows], q, queries.utm[q_rows]


def scores(database: np.ndarray, queries: np.ndarray, positives: list, size: int) -> dict:
    """Recall@1/5 (%), mAP@4 (%), per-query top-1 hits, and cosine stats of the map prefix."""
    _, ranked = PrefixIndex(database, size).search(queries, 5)
    relevant = relevance(ranked, positives)
    recall = recall_at_n(relevant, (1, 5))
    mean_cos, var_cos = cosine_stats(database[:, :size])
    return {'recall@1': 100 * recall[1], 'recall@5': 100 * recall[5],
            'map@4': 100 * map_at_k(relevant, np.array([len(p) for p in positives]), 4),
            'mean_cos': round(mean_cos, 4), 'var_cos_x_d': round(var_cos * size, 3),
            'hits': relevant[:, 0]}


def teacher_on_held_out_rows(raw: np.ndarray, head_cfg: HeadConfig, train_cfg: TrainConfig,
                             epochs: int, folds: int = 5) -> dict:
    """Goal 3: teacher latents of rows no teacher saw, pooled over K folds."""
    stats, x, _, _ = prepare(raw, train_cfg)
    latents = np.zeros((len(raw), head_cfg.latent_dim))
    order = np.random.default_rng(train_cfg.seed + 7).permutation(len(raw))
    for fold in range(folds):
        held = np.zeros(len(raw), bool)
        held[order[fold::folds]] = True
        autoencoder, _, _ = fit_autoencoder(x, np.flatnonzero(~held), None, head_cfg,
                                            train_cfg, epochs, progress=False)
        with torch.no_grad():
            latents[held] = autoencoder.encoder(x[torch.from_numpy(held)]).numpy()
    mean_cos, var_cos = cosine_stats(latents)
    sample = np.linalg.eigvalsh(np.cov(latents, rowvar=False))
    halves = np.random.default_rng(0).permutation(len(latents))
    first, second = latents[halves[::2]], latents[halves[1::2]]
    cross = np.concatenate([((b - b.mean(0)) @ np.linalg.eigh(np.cov(a, rowvar=False))[1]).var(0)
                            for a, b in ((first, second), (second, first))])
    ok = abs(mean_cos) <= 0.01 and abs(var_cos * latents.shape[1] - 1) <= 0.25 and \
        cross.min() >= 0.5 and cross.max() <= 2.0
    return {'mean_cos': round(mean_cos, 4), 'var_cos_x_d': round(var_cos * latents.shape[1], 3),
            'eigenvalues_sample': [round(float(sample.min()), 3), round(float(sample.max()), 3)],
            'eigenvalues_cross_validated': [round(float(cross.min()), 3),
                                            round(float(cross.max()), 3)],
            'verdict': 'PASS' if ok else 'FAIL'}


def run_set(name: str, args: argparse.Namespace, common: dict) -> None:
    """Train, fit the baselines, score every method and print the verdicts of one set."""
    started = time.perf_counter()
    db, db_utm, q, q_utm = embed_set(name, args)
    common = {**common, 'set': name, 'n_map': len(db), 'n_queries': len(q),
              'input_dim': int(db.shape[1])}
    emit({'kind': 'data', 'seconds': round(time.perf_counter() - started, 1)}, common)
    positives = positives_within(db_utm, q_utm, 25.0)
    head_cfg, train_cfg = HeadConfig(), TrainConfig(seed=args.seed, threads=args.threads)
    started = time.perf_counter()
    head = fit_head(db, head_cfg, train_cfg, progress=False, utm=db_utm)
    emit({'kind': 'train', 'wall_s': round(time.perf_counter() - started, 1),
          'report': head.report}, common)
    with tempfile.TemporaryDirectory() as tmp:
        projector = Projector.load(write_trained(head, db, 'bench', head_cfg, train_cfg,
                                                 Path(tmp) / 'head.safetensors'))
    started = time.perf_counter()
    tuned = fit_partial_whitening(db, db_utm, SIZES)
    emit({'kind': 'partial-whitening', 'powers': tuned.powers,
          'wall_s': round(time.perf_counter() - started, 1)}, common)
    methods = {'raw': Truncation(db.shape[1]), 'pca': PCA.fit(db),
               'pcaw': PCA.fit(db, whiten=True), 'pcaw-tuned': tuned,
               'aesvc': AesvcEncoder(head.standardisation, head.autoencoder), 'head': projector}
    if args.ssd:
        methods['ssd'] = fit_ssd(db, head, SIZES, head_cfg, train_cfg, progress=False)
    table: dict = {}
    for method_name, method in methods.items():
        for size in SIZES:
            rows = method.prefix(db, size), method.prefix(q, size)
            table[method_name, size] = scores(*rows, positives, size)
            emit({'kind': 'recall', 'method': method_name, 'size': size,
                  **{k: v for k, v in table[method_name, size].items() if k != 'hits'}}, common)
    full = scores(db, q, positives, db.shape[1])
    emit({'kind': 'recall', 'method': 'raw', 'size': int(db.shape[1]),
          **{k: v for k, v in full.items() if k != 'hits'}}, common)
    rng = np.random.default_rng(0)
    for size in SIZES:
        best = max(('raw', 'pca', 'pcaw', 'pcaw-tuned'), key=lambda m: table[m, size]['recall@1'])
        ours, theirs = table['head', size], table[best, size]
        diff = ours['hits'].astype(float) - theirs['hits']
        boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)]
        margin = ours['recall@1'] - theirs['recall@1']
        emit({'kind': 'goal1', 'size': size, 'head_recall@1': round(ours['recall@1'], 2),
              'best_baseline': best, 'best_recall@1': round(theirs['recall@1'], 2),
              'margin': round(margin, 2), 'paired_se': round(100 * float(np.std(boot)), 2),
              'verdict': 'PASS' if margin >= -TOLERANCE else 'FAIL'}, common)
    largest = table['head', max(SIZES)]['recall@1']
    emit({'kind': 'goal2', 'head_recall@1': round(largest, 2),
          'raw_full_recall@1': round(full['recall@1'], 2),
          'verdict': 'PASS' if largest >= full['recall@1'] else 'FAIL'}, common)
    held_out = teacher_on_held_out_rows(db, head_cfg, train_cfg, int(head.report['aesvc.epochs']))
    emit({'kind': 'goal3', **held_out}, common)
    mean_cos = [table['head', size]['mean_cos'] for size in SIZES]
    emit({'kind': 'goal4', 'mean_cos': mean_cos,
          'verdict': 'PASS' if max(map(abs, mean_cos)) <= 0.02 else 'FAIL'}, common)


def main() -> None:
    """Parse flags, run each set, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sets', nargs='+', default=['town', 'nordland'],
                        choices=('town', 'nordland', 'synthetic'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=TrainConfig.threads)
    parser.add_argument('--cache', default='out/bench_head', help='where the town is rendered')
    parser.add_argument('--ssd', action='store_true', help='also train SSD (one student per size)')
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    common = {'seed': args.seed, 'threads': args.threads, 'device': 'cpu',
              'load_avg_1m': round(os.getloadavg()[0], 2), **provenance()}
    for name in args.sets:
        run_set(name, args, common)


if __name__ == '__main__':
    main()
