"""A replay's frames and scores: the records both modes, the report and its plots share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ReplayFrames:
    """What a replay produced for the scored images (both modes fill this).

    Attributes:
        stamps_ns: (M,) int64 image header stamps.
        truth_xy: (M, 2) float64 ground-truth position, map frame metres.
        indices: (M, K) int64 map rows, best first; -1 where nothing was returned.
        scores: (M, K) float32 cosine scores aligned with ``indices`` (NaN where -1).
        answered: (M,) bool, False for frames the node dropped (mode 2).
        latency_s: (M,) float64 seconds, NaN where not answered.
        latency_kind: what ``latency_s`` measures, for the report.
    """

    stamps_ns: np.ndarray
    truth_xy: np.ndarray
    indices: np.ndarray
    scores: np.ndarray
    answered: np.ndarray
    latency_s: np.ndarray
    latency_kind: str
    extra_latency_s: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. embed_s, search_s
    unusable: dict[str, int] = field(default_factory=dict)   # images refused, by cause
    # with the sequence filter: (M, K) the frames' own rankings (``indices`` is the filter's)
    raw_indices: np.ndarray | None = None


@dataclass
class ReplayScores:
    """The numbers of one replay."""

    recall: dict[int, float]
    queries: int
    answered: int
    with_positive: int
    thresholds: np.ndarray     # (T,) descending
    precision: np.ndarray      # (T,)
    pr_recall: np.ndarray      # (T,)
    best_f1: float
    best_f1_threshold: float
    recall_at_full_precision: float
    latency_ms: dict[str, dict[str, float]]
    top1_correct: np.ndarray   # (M,) bool, answered and top-1 within the radius

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers (the PR curve included)."""
        return {
            'recall': {f'R@{n}': r for n, r in self.recall.items()},
            'queries': self.queries, 'answered': self.answered,
            'dropped': self.queries - self.answered, 'with_positive': self.with_positive,
            'best_f1': self.best_f1, 'best_f1_threshold': self.best_f1_threshold,
            'recall_at_100_precision': self.recall_at_full_precision,
            'latency_ms': self.latency_ms,
            'pr_curve': {'threshold': self.thresholds.tolist(),
                         'precision': self.precision.tolist(), 'recall': self.pr_recall.tolist()},
        }
