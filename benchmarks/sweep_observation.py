r"""The sequence filter's observation model: fixed temperature against per-frame scaled ones.

An experiment record for issue 15 (the Nordland 3x goal at every prefix). The default
likelihood of a top-k place is ``exp((s - s_top1) / T)`` with one fixed T; the score spread
changes with the prefix size, so a temperature scaled per frame (``T = c * (s_top1 - s_topk)``,
the spread of that frame's top-k) or per prefix (``T = c * sigma``, sigma the std of cosines
between random map rows) might suit every prefix at once. A last variant observes the places
the belief tracks with their exact cosines as well, instead of the floor outside the top-k.
This script runs each variant at every prefix in one run over the Nordland embeddings
``bench_localization.py`` caches, and, with ``--town``, on the town's query drive with its
odometry. It prints JSON lines.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_observation.py \
        --town /tmp/i15/town --town-map /tmp/i15/town_map
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
import re

import numpy as np

from aesvc_vpr.config import FilterConfig
from aesvc_vpr.head.baselines import PCA
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import positives_within, relevance
from aesvc_vpr.retrieval.place_filter import PlaceFilter

from bench_localization import FRAME_M, nordland_embeddings, PERIOD_NS, SIZES  # noqa: I100

K_MAX = 50


class SpreadFilter(PlaceFilter):
    """PlaceFilter whose temperature is ``scale`` times the spread of each frame's top-k."""

    scale = 0.2

    def _observe(self, rows: np.ndarray, scores: np.ndarray) -> None:
        spread = max(self.scale * float(scores.max() - scores.min()), 1e-6)
        self._weigh(rows, np.exp((scores - scores.max()) / spread))


def run(kind: type[PlaceFilter], utm: np.ndarray, cfg: FilterConfig, rows: np.ndarray,
        scores: np.ndarray, stamps_ns: np.ndarray, odometer_m: np.ndarray | None,
        support_scores: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(M,) the filter's most probable row per frame.

    ``support_scores`` (unit map rows (N, D), unit queries (M, D)): the places the belief
    tracks are observed with their exact cosines too, not only the top-k.
    """
    filt = kind(utm, cfg)
    best = rows[:, 0].copy()
    for i in range(len(rows)):
        frame_rows, frame_scores = rows[i, :cfg.top_k], scores[i, :cfg.top_k]
        if support_scores is not None:
            xb, xq = support_scores
            support = np.setdiff1d(filt.belief_rows, frame_rows)
            frame_rows = np.concatenate([frame_rows, support])
            frame_scores = np.concatenate([frame_scores, xb[support] @ xq[i]])
        out = filt.step(int(stamps_ns[i]), frame_rows, frame_scores,
                        None if odometer_m is None else float(odometer_m[i]))
        if len(out.rows):
            best[i] = out.rows[0]
    return best


def variants(sigma: float) -> list[tuple[str, type[PlaceFilter], dict]]:
    """(name, filter class, FilterConfig changes) of every variant."""
    out: list[tuple[str, type[PlaceFilter], dict]] = [
        (f'fixed T={t}', PlaceFilter, {'temperature': t}) for t in (0.02, 0.03)]
    out += [(f'T={c}*sigma_prefix', PlaceFilter, {'temperature': c * sigma})
            for c in (0.15, 0.2, 0.3)]
    for c in (0.15, 0.2, 0.25):
        for k in (20, 50):
            kind = type(f'Spread{c}', (SpreadFilter,), {'scale': c})
            out.append((f'T={c}*spread top-{k}', kind, {'top_k': k}))
    out += [(f'support cosines T={t}', PlaceFilter, {'temperature': t}) for t in (0.02, 0.05)]
    return out


def main() -> None:
    """Run every variant at every prefix; print one JSON line per (variant, data)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cache', default='/tmp/aesvc_vpr_bench_localization')
    parser.add_argument('--town', default='', help='make-town folder (its query drive)')
    parser.add_argument('--town-map', default='', help='patchgrid map of that town')
    args = parser.parse_args()
    load = round(os.getloadavg()[0], 2)
    db, db_utm, q, q_utm = nordland_embeddings(Path(args.cache))
    positives = positives_within(db_utm, q_utm, 25.0)
    pcaw = PCA.fit(db, whiten=True)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, len(db), (2, 5000))
    stamps = np.arange(len(q)) * PERIOD_NS
    results: dict[str, dict] = {}
    for size in SIZES:
        xb, xq = pcaw.prefix(db, size), pcaw.prefix(q, size)
        unit = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        sigma = float(np.std(np.sum(unit[pairs[0]] * unit[pairs[1]], axis=1)))
        scores, rows = PrefixIndex(xb, size).search(xq, K_MAX)
        single = relevance(rows[:, :1], positives)[20:, 0].mean()
        unit_q = xq / np.linalg.norm(xq, axis=1, keepdims=True)
        for name, kind, change in variants(sigma):
            cfg = dataclasses.replace(FilterConfig(mode='hmm', speed_mps=FRAME_M), **change)
            support = (unit, unit_q) if name.startswith('support') else None
            best = run(kind, db_utm, cfg, rows, scores, stamps, None, support)
            filtered = relevance(best[:, None], positives)[20:, 0].mean()
            results.setdefault(name, {})[size] = (round(100 * single, 2),
                                                  round(100 * filtered, 2))
    for name, by_size in results.items():
        print(json.dumps({'data': 'nordland', 'variant': name, 'load_avg_1m': load,
                          'ratio': {s: round(f / r, 2) for s, (r, f) in by_size.items()},
                          'single_filtered': by_size}), flush=True)
    if args.town:
        town(args, load)


def town(args: argparse.Namespace, load: float) -> None:
    """Run the variants on the town's query drive at prefix 64, odometry from its poses."""
    from aesvc_vpr.backbone.feed import embed_paths
    from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
    from aesvc_vpr.data.datasets import load_dataset
    from aesvc_vpr.replay.offline import path_lengths
    from aesvc_vpr.retrieval.mapdb import MapDatabase

    queries = load_dataset(args.town).queries
    order = np.argsort([int(re.search(r'queries-(\d+)', p).group(1)) for p in queries.paths])
    mapdb = MapDatabase.load(args.town_map)
    raw, rows_ok, _ = embed_paths(PatchGridBackbone(), [queries.paths[i] for i in order], 16,
                                  'town queries', False)
    utm = queries.utm[order][rows_ok]
    scores, rows = PrefixIndex(mapdb.embeddings, 64).search(raw, K_MAX)
    positives = positives_within(mapdb.utm, utm, 25.0)
    stamps = np.arange(len(rows)) * PERIOD_NS // 2          # the town drive: 2 Hz
    single = relevance(rows[:, :1], positives)[:, 0].mean()
    for name, kind, change in variants(0.0):
        if 'sigma' in name or 'support' in name:
            continue
        cfg = dataclasses.replace(FilterConfig(mode='hmm'), **change)
        best = run(kind, mapdb.utm, cfg, rows, scores, stamps, path_lengths(utm))
        filtered = relevance(best[:, None], positives)[:, 0].mean()
        print(json.dumps({'data': 'town', 'variant': name, 'load_avg_1m': load,
                          'single': round(100 * single, 2),
                          'filtered': round(100 * filtered, 2)}), flush=True)


if __name__ == '__main__':
    main()
