"""The three PNGs of a replay report: trajectory with correct/wrong matches, PR curve, latency.

Figures are drawn with matplotlib's object API on an Agg canvas, so no display, no pyplot state
and no global backend switch are involved.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.replay.frames import ReplayFrames, ReplayScores

CORRECT, WRONG, DROPPED = '#1a9850', '#d73027', '#7f7f7f'


def plot_replay(out: Path, scores: ReplayScores, frames: ReplayFrames,
                map_utm: np.ndarray) -> dict[str, Path]:
    """Write trajectory.png, pr_curve.png and latency.png into ``out``."""
    return {'trajectory': _save(_trajectory(scores, frames, map_utm), out / 'trajectory.png'),
            'pr_curve': _save(_pr(scores), out / 'pr_curve.png'),
            'latency': _save(_latency(frames), out / 'latency.png')}


def _trajectory(scores: ReplayScores, frames: ReplayFrames, map_utm: np.ndarray) -> Figure:
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    origin = frames.truth_xy.min(axis=0) if len(frames.truth_xy) else np.zeros(2)
    places = map_utm - origin
    truth = frames.truth_xy - origin
    ax.scatter(places[:, 0], places[:, 1], s=4, c='#c8c8c8', label=f'map ({len(places)})')
    ax.plot(truth[:, 0], truth[:, 1], '-', c='#4d4d4d', lw=0.6, label='query trajectory')
    answered = frames.answered & (frames.indices[:, 0] >= 0)
    wrong = answered & ~scores.top1_correct
    # a thin line from each wrongly matched query to the place it was matched to
    for i in np.flatnonzero(wrong):
        match = places[frames.indices[i, 0]]
        ax.plot([truth[i, 0], match[0]], [truth[i, 1], match[1]], '-', c=WRONG, lw=0.4,
                alpha=0.5)
    for mask, colour, label in ((scores.top1_correct, CORRECT, 'top-1 correct'),
                                (wrong, WRONG, 'top-1 wrong'),
                                (~answered, DROPPED, 'no answer (dropped)')):
        if mask.any():
            ax.scatter(truth[mask, 0], truth[mask, 1], s=14, c=colour,
                       label=f'{label} ({int(mask.sum())})', zorder=3)
    ax.set_aspect('equal', adjustable='datalim')
    ax.set_xlabel(f'easting - {origin[0]:.0f} (m)')
    ax.set_ylabel(f'northing - {origin[1]:.0f} (m)')
    r1 = scores.recall.get(1, float('nan'))
    ax.set_title(f'Recall@1 {100 * r1:.1f}% over {scores.queries} queries')
    ax.legend(loc='best', fontsize=8)
    return fig


def _pr(scores: ReplayScores) -> Figure:
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    if len(scores.thresholds):
        ax.plot(scores.pr_recall, scores.precision, '-', c='#2166ac', lw=1.5)
        best = int(np.argmin(np.abs(scores.thresholds - scores.best_f1_threshold)))
        ax.plot(scores.pr_recall[best], scores.precision[best], 'o', c=WRONG,
                label=f'best F1 {scores.best_f1:.3f} (score >= {scores.best_f1_threshold:.3f})')
        ax.legend(loc='lower left', fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.set_title(f'top-1 precision-recall; recall at 100% precision '
                 f'{100 * scores.recall_at_full_precision:.1f}%', fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def _latency(frames: ReplayFrames) -> Figure:
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    ms = 1e3 * frames.latency_s[np.isfinite(frames.latency_s)]
    if len(ms):
        ax.hist(ms, bins=min(50, max(5, len(ms) // 4)), color='#4393c3')
        for q, style in ((50, '-'), (95, '--')):
            value = float(np.percentile(ms, q))
            ax.axvline(value, c='k', ls=style, lw=1, label=f'p{q} {value:.1f} ms')
        ax.legend(fontsize=8)
    ax.set_xlabel('latency (ms)')
    ax.set_ylabel('frames')
    ax.set_title(frames.latency_kind, fontsize=9)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_write(path) as f:
        fig.savefig(f, format='png', dpi=110, bbox_inches='tight')
    return path
