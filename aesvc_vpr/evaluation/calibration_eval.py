"""Fit a map's match-probability calibration on a labelled query set (``aesvc-vpr calibrate``).

The queries are searched exactly as the node searches a frame (``Localizer.search`` at the
given prefix and top-k); each gives the features of ``retrieval.calibration`` and a label (its
top-1 lies within ``radius_m`` of its ground truth). Part of the queries is held out to measure
the expected calibration error of the fitted model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from aesvc_vpr.backbone.feed import embed_paths
from aesvc_vpr.config import ImageConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import EvaluationError, MapError
from aesvc_vpr.evaluation.map_eval import save_figure
from aesvc_vpr.retrieval.calibration import (Calibration, fit_calibration, map_identity_of,
                                             match_features)
from aesvc_vpr.retrieval.localizer import Localizer

log = logging.getLogger(__name__)


def calibrate_localizer(localizer: Localizer, queries: GeoImageSet, held_out_fraction: float = 0.3,
                        batch_size: int = 8, images: ImageConfig | None = None, seed: int = 0
                        ) -> tuple[Calibration, dict[str, np.ndarray]]:
    """Embed and search the queries, label them, and fit the calibration.

    Returns:
        The calibration (not yet stored) and the held-out probabilities and labels.

    Raises:
        EvaluationError: no query decodes, or too few / one-sided labels to fit.
    """
    raw, rows, _ = embed_paths(localizer.backbone, queries.paths, batch_size, 'queries', True,
                               images)
    if not len(rows):
        raise EvaluationError(f'{queries.source}: none of the {len(queries)} queries decode')
    full = localizer.encoder.project(raw) if localizer.projector is not None else raw
    radius_m = localizer.match_cfg.radius_m
    results = localizer.search(full, [0] * len(rows))
    truth = queries.utm[rows]
    features, correct = [], []
    for loc, xy in zip(results, truth):
        if not loc.matches:
            continue
        positions = np.array([[m.easting, m.northing] for m in loc.matches])
        features.append(match_features(np.array([m.score for m in loc.matches]), positions,
                                       radius_m))
        correct.append(bool(np.hypot(*(positions[0] - xy)) <= radius_m))
    identity = map_identity_of(localizer.mapdb, localizer.prefix_dim, localizer.match_cfg.top_k,
                               radius_m)
    try:
        return fit_calibration(np.array(features), np.array(correct), identity,
                               held_out_fraction, seed)
    except MapError as err:
        raise EvaluationError(f'{queries.source}: {err}') from err


def calibration_summary(calibration: Calibration) -> dict[str, Any]:
    """Return what ``calibrate`` prints: the held-out figures and the map state it is tied to."""
    return {**calibration.held_out, **calibration.map_identity}


def plot_reliability(probability: np.ndarray, correct: np.ndarray, ece: float, path: Path,
                     bins: int = 10, title: str = '') -> None:
    """Write a reliability diagram PNG: accuracy against mean probability per bin.

    Raises:
        EvaluationError: the file cannot be written.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    mids, accuracy, counts = [], [], []
    for b in range(bins):
        inside = which == b
        if inside.any():
            mids.append(probability[inside].mean())
            accuracy.append(correct[inside].mean())
            counts.append(int(inside.sum()))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], 'k--', lw=1, label='perfect')
    ax.plot(mids, accuracy, 'o-', label=f'held out (ECE {ece:.3f})')
    for x, y, c in zip(mids, accuracy, counts):
        ax.annotate(str(c), (x, y), textcoords='offset points', xytext=(4, -10), fontsize=7)
    ax.set_xlabel('predicted P(top-1 within radius)')
    ax.set_ylabel('observed fraction correct')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc='upper left')
    ax.set_title(title, fontsize=9)
    save_figure(fig, path, 'the reliability diagram')
