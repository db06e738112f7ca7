"""Loop-closure detection scored on a sequence with ground truth.

A published loop is true when the ground-truth positions of the query frame and of the matched
keyframe lie within ``radius_m``. A frame is a loop opportunity ("loopable") when some earlier
frame outside the exclusion window (the detector's exclusion_s, and exclusion_m along the
ground-truth path) lies within ``radius_m`` of it. Then:

    precision = true loops / published loops (1.0 when nothing is published)
    recall    = loopable frames with a true loop / loopable frames

The precision-recall curve re-runs the detector over stored embeddings for each score threshold
(with temporal consistency and geometric check as configured, geometric results cached), so
every point is exactly what the detector would publish at that threshold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import logging
import time
from typing import Callable, Iterable, Sequence

import numpy as np

from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import LoopClosureConfig
from aesvc_vpr.errors import EvaluationError
from aesvc_vpr.loop.detector import LoopClosure, LoopClosureDetector
from aesvc_vpr.loop.geometric import Features, GeometricVerifier, make_thumbnail, Thumbnail

log = logging.getLogger(__name__)

Pose = tuple[float, float, float]


@dataclass(frozen=True)
class LoopFrame:
    """One frame of an evaluation sequence; give an embedding, or an image to embed."""

    stamp_ns: int
    gt_pose: Pose                        # ground truth x_m, y_m, yaw_rad (yaw may be NaN)
    embedding: np.ndarray | None = None  # (E,) full-size projected embedding
    image: np.ndarray | None = None      # (H, W, 3) uint8 RGB
    odom: Pose | None = None             # what the detector is told as odometry, if anything


@dataclass
class LoopReport:
    """Scores at the configured threshold, the PR curve and latency."""

    min_score: float
    precision: float
    recall: float
    recall_at_100_precision: float
    n_frames: int
    n_loopable: int
    n_published: int
    n_true: int
    pr_curve: list[dict[str, float]]
    latency_ms: dict[str, float]
    counters: dict[str, int]
    closures: list[tuple[LoopClosure, bool]] = field(repr=False, default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """JSON-able summary (without the individual closures)."""
        out = dataclasses.asdict(self)
        out.pop('closures')
        return out


class CachedVerifier(GeometricVerifier):
    """Remembers features per thumbnail and inliers per pair, so a threshold sweep pays once."""

    def __init__(self, method: str) -> None:
        super().__init__(method)
        self._features: dict[int, tuple[Thumbnail, Features]] = {}
        self._inliers: dict[tuple[int, int], int] = {}

    def features(self, thumbnail: Thumbnail) -> Features:
        """Features of a thumbnail, computed once per thumbnail object."""
        hit = self._features.get(id(thumbnail))
        if hit is None:   # the thumbnail is kept in the entry, so its id is never reused
            hit = self._features[id(thumbnail)] = (thumbnail, super().features(thumbnail))
        return hit[1]

    def inliers(self, a: Features, b: Features) -> int:
        """Inliers of a pair, computed once per pair of feature objects."""
        key = (id(a), id(b))
        if key not in self._inliers:
            self._inliers[key] = super().inliers(a, b)
        return self._inliers[key]


def loopable(stamps_ns: np.ndarray, gt_xy: np.ndarray, radius_m: float, exclusion_s: float,
             exclusion_m: float = 0.0) -> np.ndarray:
    """Which frames have an earlier frame outside the exclusion window within ``radius_m``.

    Args:
        stamps_ns: (N,) int64 increasing frame stamps.
        gt_xy: (N, 2) float64 ground-truth positions, metres (NaN rows are never loopable).
        radius_m: revisit radius.
        exclusion_s, exclusion_m: the detector's exclusion window (time; ground-truth path).

    Returns:
        (N,) bool.
    """
    steps = np.linalg.norm(np.diff(gt_xy, axis=0), axis=1)
    path_m = np.concatenate([[0.0], np.cumsum(np.nan_to_num(steps))])
    newest = np.searchsorted(stamps_ns, stamps_ns - int(round(exclusion_s * 1e9)), 'right')
    if exclusion_m > 0:
        newest = np.minimum(newest, np.searchsorted(path_m, path_m - exclusion_m, 'right'))
    out = np.zeros(len(stamps_ns), bool)
    for i, n in enumerate(newest):
        if n > 0:
            with np.errstate(invalid='ignore'):
                out[i] = bool(np.any(np.linalg.norm(gt_xy[:n] - gt_xy[i], axis=1) <= radius_m))
    return out


def evaluate_loops(frames: Iterable[LoopFrame], cfg: LoopClosureConfig, *, radius_m: float,
                   prefix_dim: int | None = None,
                   embed: Callable[[Sequence[np.ndarray]], np.ndarray] | None = None,
                   thresholds: Sequence[float] | None = None) -> LoopReport:
    """Run the detector over a sequence and score it against ground truth.

    Args:
        frames: the sequence in time order.
        cfg: detector settings; ``cfg.min_score`` is the reported operating point.
        radius_m: a loop is true when the two ground-truth positions are this close.
        prefix_dim: embedding prefix searched (None: full).
        embed: images -> (N, E) full-size embeddings, for frames given as images.
        thresholds: score thresholds of the PR curve; default 0.00, 0.05, ..., 1.00 plus
            ``cfg.min_score``.

    Raises:
        EvaluationError: a frame has neither embedding nor image, or an image but no ``embed``.
    """
    stamps, gt, embeddings, thumbs, odoms, embed_ms = _prepare(frames, cfg, embed)
    verifier = CachedVerifier(cfg.geometric_check) if cfg.geometric_check != 'off' else None
    positives = loopable(stamps, gt[:, :2], radius_m, cfg.exclusion_s, cfg.exclusion_m)
    index_of = {int(s): i for i, s in enumerate(stamps)}

    def run(min_score: float) -> tuple[list[tuple[LoopClosure, bool]], dict, list[float]]:
        detector = LoopClosureDetector(dataclasses.replace(cfg, min_score=min_score),
                                       prefix_dim, verifier)
        closures, times = [], []
        for i, stamp in enumerate(stamps):
            start = time.perf_counter()
            closure = detector.process(int(stamp), embeddings[i], thumbnail=thumbs[i],
                                       pose=odoms[i])
            times.append((time.perf_counter() - start) * 1e3)
            if closure is not None:
                j = index_of[closure.t_match_ns]
                true = bool(np.linalg.norm(gt[i, :2] - gt[j, :2]) <= radius_m)
                closures.append((closure, true))
        return closures, detector.counters, times

    # the operating point first, so its latency includes uncached geometric checks
    closures, counters, detect_ms = run(cfg.min_score)
    scores = _scores(closures, positives, index_of)
    grid = np.linspace(0.0, 1.0, 21) if thresholds is None else thresholds
    curve = []
    for threshold in progress_bar(sorted({round(float(t), 6) for t in (*grid, cfg.min_score)}),
                                  desc='PR sweep', unit='thr', leave=False):
        curve.append({'threshold': threshold,
                      **_scores(run(threshold)[0], positives, index_of)})
    perfect = [p['recall'] for p in curve if p['precision'] == 1.0 and p['published']]
    latency = {'detect_median': float(np.median(detect_ms)),
               'detect_p95': float(np.percentile(detect_ms, 95))}
    if embed_ms:
        latency.update(embed_median=float(np.median(embed_ms)),
                       embed_p95=float(np.percentile(embed_ms, 95)))
    report = LoopReport(
        min_score=cfg.min_score, precision=scores['precision'], recall=scores['recall'],
        recall_at_100_precision=max(perfect, default=0.0), n_frames=len(stamps),
        n_loopable=int(positives.sum()), n_published=int(scores['published']),
        n_true=int(scores['true']), pr_curve=curve, latency_ms=latency, counters=counters,
        closures=closures)
    log.info('loop closure: precision %.3f recall %.3f (R@P100 %.3f) over %d frames, '
             '%d loopable, %d published', report.precision, report.recall,
             report.recall_at_100_precision, report.n_frames, report.n_loopable,
             report.n_published)
    return report


def _prepare(frames: Iterable[LoopFrame], cfg: LoopClosureConfig,
             embed: Callable[[Sequence[np.ndarray]], np.ndarray] | None) -> tuple:
    """Embed once and keep only what the sweep needs (thumbnails, not full images)."""
    stamps, gt, embeddings, thumbs, odoms, embed_ms = [], [], [], [], [], []
    for frame in progress_bar(frames, desc='frames', unit='frame', leave=False):
        vector = frame.embedding
        if vector is None:
            if frame.image is None or embed is None:
                raise EvaluationError(f'loop evaluation frame at {frame.stamp_ns} ns has no '
                                      'embedding, and no image with an embed function to make one')
            start = time.perf_counter()
            vector = embed([frame.image])[0]
            embed_ms.append((time.perf_counter() - start) * 1e3)
        thumb = None
        if cfg.geometric_check != 'off' and frame.image is not None:
            thumb = make_thumbnail(frame.image, cfg.thumbnail_side, cfg.focal_px)
        stamps.append(frame.stamp_ns)
        gt.append(frame.gt_pose)
        embeddings.append(np.asarray(vector, np.float32).reshape(-1))
        thumbs.append(thumb)
        odoms.append(frame.odom)
    if not stamps:
        raise EvaluationError('loop evaluation got no frames')
    return (np.asarray(stamps, np.int64), np.asarray(gt, np.float64), embeddings, thumbs, odoms,
            embed_ms)


def _scores(closures: list[tuple[LoopClosure, bool]], positives: np.ndarray,
            index_of: dict[int, int]) -> dict[str, float]:
    published = len(closures)
    true = sum(ok for _, ok in closures)
    found = {index_of[c.t_query_ns] for c, ok in closures if ok}
    hits = len(found & set(np.flatnonzero(positives).tolist()))
    n_pos = int(positives.sum())
    return {'published': published, 'true': true,
            'precision': true / published if published else 1.0,
            'recall': hits / n_pos if n_pos else 0.0}
