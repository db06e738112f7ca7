"""Scoring a replay the same way in both modes: recall, precision-recall, latency; table/JSON/PNG.

Definitions (one row per image that has ground truth):

- Recall@N: the query is correct when any of its top N map places lies within ``radius_m`` of
  its ground truth (``aesvc_vpr.metrics``, as ``aesvc-vpr eval`` counts), over all scored
  queries; a frame the node dropped counts as a miss.
- Precision-recall over the score threshold t: a query is *accepted* when it was answered and its
  best score >= t. precision = accepted and correct / accepted; recall = accepted and correct /
  queries that have a map place within the radius. Reported: best F1 (and its t) and the highest
  recall at 100 % precision (0 when no threshold reaches it).
- Latency: per-frame seconds, of the kind the mode measures (``latency_kind``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.spatial import cKDTree

from aesvc_vpr.common.fileio import atomic_write, check_writable
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.errors import ReplayError
from aesvc_vpr.index.ranking import positives_within, recall_at_n, relevance
from aesvc_vpr.replay.frames import ReplayFrames, ReplayScores
from aesvc_vpr.replay.plots import plot_replay

log = logging.getLogger(__name__)

RECALL_AT = (1, 5, 10, 20)


def score_replay(frames: ReplayFrames, map_utm: np.ndarray, radius_m: float,
                 recall_at: Sequence[int] = RECALL_AT) -> ReplayScores:
    """Score a replay against the map's positions.

    Args:
        frames: the replay's outputs.
        map_utm: (N, 2) map positions, same frame as ``frames.truth_xy``.
        radius_m: a map place within this distance is correct.
        recall_at: N values; those above the number of results per query are left out.
    """
    indices = np.where(frames.answered[:, None], frames.indices, -1)
    positives = positives_within(map_utm, frames.truth_xy, radius_m)
    relevant = relevance(indices, positives)
    ns = [n for n in recall_at if n <= indices.shape[1]]
    if len(ns) < len(recall_at):
        log.warning('only %d results per query: Recall@%s left out', indices.shape[1],
                    [n for n in recall_at if n not in ns])
    has_positive = np.array([len(p) > 0 for p in positives], bool)
    top1 = relevant[:, 0] if relevant.shape[1] else np.zeros(len(indices), bool)
    best = np.where(frames.answered & (indices[:, 0] >= 0), frames.scores[:, 0], -np.inf)
    thresholds, precision, pr_recall = _pr_curve(best, top1, int(has_positive.sum()))
    f1 = np.divide(2 * precision * pr_recall, precision + pr_recall,
                   out=np.zeros_like(precision), where=precision + pr_recall > 0)
    at_best = int(np.argmax(f1)) if len(f1) else 0
    exact = precision >= 1.0
    return ReplayScores(
        recall=recall_at_n(relevant, ns) if ns else {}, queries=len(indices),
        answered=int(frames.answered.sum()), with_positive=int(has_positive.sum()),
        thresholds=thresholds, precision=precision, pr_recall=pr_recall,
        best_f1=float(f1[at_best]) if len(f1) else 0.0,
        best_f1_threshold=float(thresholds[at_best]) if len(f1) else float('nan'),
        recall_at_full_precision=float(pr_recall[exact].max()) if exact.any() else 0.0,
        latency_ms=_latency_ms(frames), top1_correct=top1)


def single_frame_recall(frames: ReplayFrames, map_utm: np.ndarray,
                        radius_m: float) -> dict[str, float]:
    """Recall@N of the frames' own rankings when ``indices`` holds the filter's estimate."""
    if frames.raw_indices is None:
        return {}
    raw = dataclasses.replace(frames, indices=frames.raw_indices)
    return {f'R@{n}': r for n, r in score_replay(raw, map_utm, radius_m).recall.items()}


def format_table(scores: ReplayScores, title: str) -> str:
    """Format the scores as a plain-text table for stdout."""
    lines = [title, '-' * len(title)]
    lines.append('  '.join(f'R@{n:<3} {100 * r:6.2f}' for n, r in scores.recall.items()))
    lines.append(f'queries {scores.queries}  answered {scores.answered}  '
                 f'dropped {scores.queries - scores.answered}  '
                 f'with a place within radius {scores.with_positive}')
    lines.append(f'best F1 {scores.best_f1:.3f} at score >= {scores.best_f1_threshold:.3f}  '
                 f'recall at 100% precision {100 * scores.recall_at_full_precision:.2f}')
    for kind, stats in scores.latency_ms.items():
        lines.append(f'latency {kind}: median {stats["median"]:.1f} ms  p95 {stats["p95"]:.1f} ms'
                     f'  max {stats["max"]:.1f} ms  (n={int(stats["count"])})')
    return '\n'.join(lines)


def check_report_dir(out_dir: str | Path) -> None:
    """Fail before a replay starts when its report folder cannot be written.

    Raises:
        ReplayError: the folder cannot be created or written.
    """
    try:
        check_writable(Path(out_dir) / 'report.json')
    except OSError as err:
        raise ReplayError(f'--out {out_dir}: cannot write the report there '
                          f'({err.strerror or err}); choose a writable folder') from err


def write_report(out_dir: str | Path, scores: ReplayScores, frames: ReplayFrames,
                 map_utm: np.ndarray, parameters: dict[str, Any],
                 extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write report.json, frames.csv and the three plots into ``out_dir``.

    Returns:
        name -> path of every file written.

    Raises:
        ReplayError: a file cannot be written.
    """
    try:
        return _write_report(Path(out_dir), scores, frames, map_utm, parameters, extra)
    except OSError as err:
        raise ReplayError(f'{out_dir}: cannot write the report ({err})') from err


def _write_report(out: Path, scores: ReplayScores, frames: ReplayFrames, map_utm: np.ndarray,
                  parameters: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    report = {'parameters': parameters, **provenance(), **scores.summary(), **(extra or {})}
    paths = {'report': out / 'report.json', 'frames': out / 'frames.csv'}
    with atomic_write(paths['report'], 'w') as f:
        json.dump(report, f, indent=2, default=_json_default)
        f.write('\n')
    with atomic_write(paths['frames'], 'w') as f:
        f.write('stamp_ns,truth_x,truth_y,answered,top1_index,top1_score,top1_correct,'
                'latency_ms\n')
        for i in range(len(frames.stamps_ns)):
            f.write(f'{frames.stamps_ns[i]},{frames.truth_xy[i, 0]:.3f},'
                    f'{frames.truth_xy[i, 1]:.3f},{int(frames.answered[i])},'
                    f'{frames.indices[i, 0]},{frames.scores[i, 0]:.6f},'
                    f'{int(scores.top1_correct[i])},{1e3 * frames.latency_s[i]:.3f}\n')
    paths.update(plot_replay(out, scores, frames, map_utm))
    return paths


def report_replay(out_dir: str | Path, frames: ReplayFrames, map_utm: np.ndarray,
                  radius_m: float, parameters: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> tuple[ReplayScores, dict[str, Path]]:
    """Score a replay and write its report; the one ending both modes share.

    Returns:
        The scores and the files written (see ``write_report``).
    """
    _warn_if_far(frames.truth_xy, map_utm, radius_m)
    scores = score_replay(frames, map_utm, radius_m)
    log.info('replay: %s over %d queries, %d answered', {f'R@{n}': round(r, 4) for n, r in
                                                         scores.recall.items()},
             scores.queries, scores.answered)
    return scores, write_report(out_dir, scores, frames, map_utm, parameters, extra)


def _warn_if_far(truth_xy: np.ndarray, map_utm: np.ndarray, radius_m: float) -> None:
    """Ground truth far from every map place usually means another frame or UTM zone."""
    if not len(truth_xy):
        return
    nearest_m, _ = cKDTree(map_utm).query(truth_xy)
    median_m = float(np.median(nearest_m))
    if median_m > 10 * radius_m:
        log.warning('the median query is %.0f m from the nearest map place (radius %.0f m): '
                    "is the pose topic in the map's frame (UTM easting/northing)?", median_m,
                    radius_m)


def _pr_curve(best: np.ndarray, correct: np.ndarray, positives: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct best score, thresholds descending."""
    accepted = np.isfinite(best)
    order = np.argsort(-best[accepted], kind='stable')
    sorted_scores = best[accepted][order]
    hits = np.cumsum(correct[accepted][order])
    taken = np.arange(1, len(order) + 1)
    # the last row of each run of equal scores: a threshold takes all of them or none
    last = np.append(sorted_scores[1:] != sorted_scores[:-1], True) if len(order) else []
    thresholds = sorted_scores[last].astype(np.float64)
    precision = hits[last] / taken[last]
    recall = hits[last] / max(positives, 1)
    return thresholds, precision.astype(np.float64), recall.astype(np.float64)


def _latency_ms(frames: ReplayFrames) -> dict[str, dict[str, float]]:
    series = {frames.latency_kind: frames.latency_s, **frames.extra_latency_s}
    out = {}
    for kind, values in series.items():
        ms = 1e3 * np.asarray(values, np.float64)
        ms = ms[np.isfinite(ms)]
        if not len(ms):
            continue
        out[kind] = {'count': float(len(ms)), 'mean': float(ms.mean()),
                     'median': float(np.median(ms)), 'p90': float(np.percentile(ms, 90)),
                     'p95': float(np.percentile(ms, 95)), 'p99': float(np.percentile(ms, 99)),
                     'max': float(ms.max())}
    return out


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')
