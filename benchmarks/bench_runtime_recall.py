r"""Recall@1 on the synthetic town under each backbone runtime, against torch-fp32 in the same run.

Issue 8 asks that the fastest runtime keeps Recall@1 within 1 point of fp32 on the town. The
same DINOv2 weights embed the same town images under every runtime; each runtime's descriptors
are searched by exact cosine nearest neighbour (the full raw descriptor, no head), and a match
within ``--radius-m`` of the query's true position counts. One JSON line per runtime with
Recall@1/5, the change against fp32 in points, the share of queries whose top-1 is fp32's own
top-1, the descriptor cosine to fp32 and the embedding time per image.

The weights are timm's random initialisation (no real DINOv2 weights on the benchmark machine),
whose Recall@1 on the town is near chance, so the recall change alone says little. The top-1
agreement does not need trained weights: Recall@1 cannot change by more than the share of
queries whose top-1 changed, so ``100 * (1 - top1_same_as_fp32)`` bounds the change in points
for these descriptors. Random-init descriptors are more alike than trained ones (near-ties
flip easily), which makes the bound pessimistic.

    .venv/bin/python benchmarks/bench_runtime_recall.py --db 1000 --queries 300
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

from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.dinov2_archs import MODELS
from aesvc_vpr.backbone.weights import random_weights
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import BackboneConfig, DESCRIPTORS, RUNTIMES
from aesvc_vpr.data.town import make_town
from aesvc_vpr.data.town.views import town_calibration
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.ranking import positives_within, recall_at_n, relevance


def main() -> None:
    """Make the town, embed it under every runtime, print one JSON line per runtime."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', choices=list(MODELS), default='vit_small_patch14_dinov2')
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES,
                        default=['torch-fp32', 'onnx-fp32', 'onnx-int8'])
    parser.add_argument('--db', type=int, default=1000)
    parser.add_argument('--queries', type=int, default=300)
    parser.add_argument('--difficulty', type=float, default=0.5)
    parser.add_argument('--radius-m', type=float, default=25.0)
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument('--descriptor', choices=DESCRIPTORS, default='cls')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = random_weights(MODELS[args.model], seed=args.seed)
    runtimes = list(dict.fromkeys(['torch-fp32', *args.runtimes]))
    with tempfile.TemporaryDirectory(prefix='bench_runtime_recall_') as tmp:
        town = make_town(Path(tmp) / 'town', n_db=args.db, n_query=args.queries,
                         difficulty=args.difficulty, seed=args.seed)
        database = [read_rgb(path) for path in town.database.paths]
        queries = [read_rgb(path) for path in town.queries.paths]
    positives = positives_within(town.database.utm, town.queries.utm, args.radius_m)
    fp32: dict[str, np.ndarray] = {}
    baseline: dict[str, float] = {}
    for runtime in runtimes:
        backbone = DinoV2Backbone(BackboneConfig(model_name=args.model, runtime=runtime,
                                                 input_size=args.input_size,
                                                 descriptor=args.descriptor), weights,
                                  town_calibration())
        start = time.perf_counter()
        db, q = backbone.embed(database), backbone.embed(queries)
        ms = (time.perf_counter() - start) * 1e3 / (len(database) + len(queries))
        db, q = l2_prefix(db, db.shape[1]), l2_prefix(q, q.shape[1])   # unit rows
        ranked = np.argsort(-(q @ db.T), axis=1)[:, :5]
        recall = recall_at_n(relevance(ranked, positives), (1, 5))
        if runtime == 'torch-fp32':
            fp32 = {'db': db, 'q': q, 'top1': ranked[:, 0]}
            baseline = {'recall_at_1': recall[1], 'ms': ms}
        cos = np.concatenate([(db * fp32['db']).sum(1), (q * fp32['q']).sum(1)])
        print(json.dumps({
            'bench': 'runtime_recall', 'model': args.model, 'runtime': runtime,
            'descriptor': args.descriptor,
            'weights': 'random-init (real DINOv2 weights unavailable on this machine)',
            'db': args.db, 'queries': args.queries, 'difficulty': args.difficulty,
            'radius_m': args.radius_m, 'recall_at_1': round(recall[1], 4),
            'recall_at_5': round(recall[5], 4),
            'baseline': 'torch-fp32', 'baseline_recall_at_1': round(baseline['recall_at_1'], 4),
            'recall_at_1_change_points': round(100 * (recall[1] - baseline['recall_at_1']), 2),
            'top1_same_as_fp32': round(float(np.mean(ranked[:, 0] == fp32['top1'])), 4),
            'cos_vs_fp32_mean': round(float(cos.mean()), 5),
            'cos_vs_fp32_min': round(float(cos.min()), 5),
            'embed_ms_per_image': round(ms, 1),
            'speedup_vs_baseline': round(baseline['ms'] / ms, 2),
            'chance_at_1': round(float(np.mean([len(p) for p in positives])) / args.db, 4),
            'threads': args.threads, 'load_avg_1m': round(os.getloadavg()[0], 2),
            **provenance()}), flush=True)


if __name__ == '__main__':
    main()
