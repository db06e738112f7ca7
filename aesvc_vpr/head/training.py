"""Training a head: the whitening start, the AE-SVC teacher, the (SS)2D student, and the choice.

1. Standardise (centre, one scale) and hold out ``val_fraction`` of the rows (seeded).
2. Teacher: the encoder starts as the rows' PCA-whitening and the decoder as its inverse, each
   plus an MLP residual that starts at zero (``whitening.py``); it is trained on the paper's
   AE-SVC loss, and the epoch with the lowest held-out loss is kept (the start counts).
3. Student: starts as the teacher's linear whitening plus a zero residual, and is trained on
   the (SS)2D loss against the teacher's latents. The epoch kept is the one whose held-out
   score (``selection.GeotagScore`` on the map's own geotags, or the held-out KL without
   geotags) is best among those that lose at no prefix size against the start.
4. With ``refit``, both are trained again on all rows for the chosen numbers of epochs.
5. The student's output is centred on the rows and scaled by the regularised whitening
   (``TrainConfig.shrink_rank``), folded into its last layer.

The run is seeded: the split, the initial weights and the batch order come from
``TrainConfig.seed``, so the same data, config and thread count give the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import logging
import os
from pathlib import Path
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.fitting import fit, FitResult, Judge, validation_loss
from aesvc_vpr.head.headfile import (DataFingerprint, HeadMeta, now_utc, package_version,
                                     save_head, Standardisation)
from aesvc_vpr.head.losses import aesvc_losses, size_weights_for, ss2d_losses
from aesvc_vpr.head.networks import AESVCAutoencoder, resolve_hidden_dim, SS2DStudent
from aesvc_vpr.head.selection import GeotagScore, mean_score
from aesvc_vpr.head.whitening import fold_output, start_student, start_teacher, Whitening

log = logging.getLogger(__name__)

SELECTION_MIN_SIZE = 16     # prefixes below this are too coarse to rank candidates by


@dataclass
class TrainedHead:
    """An in-memory head: what a head file stores, before it is written."""

    standardisation: Standardisation
    autoencoder: AESVCAutoencoder
    student: SS2DStudent
    report: dict[str, float] = field(default_factory=dict)   # 'aesvc.rec', 'select.start', ...


def split_indices(count: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split of ``count`` rows.

    Raises:
        HeadError: too few rows for two batches of at least 2 rows.
    """
    n_val = max(2, int(round(count * cfg.val_fraction)))
    if count - n_val < 2:
        raise HeadError(f'need at least {n_val + 2} embeddings to train a head with '
                        f'val_fraction {cfg.val_fraction}, got {count}')
    order = np.random.default_rng(cfg.seed).permutation(count)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def check_training_data(raw: np.ndarray) -> np.ndarray:
    """Return ``raw`` as an array after checking it is (N, D), finite, with N >= 4.

    Raises:
        HeadError: otherwise.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[0] < 4 or raw.shape[1] < 1:
        raise HeadError(f'training embeddings must be (N, D) with N >= 4, got {raw.shape}')
    if not np.issubdtype(raw.dtype, np.floating) or not np.isfinite(raw).all():
        raise HeadError(f'training embeddings must be finite floats (dtype {raw.dtype})')
    return raw


def prepare(raw: np.ndarray, cfg: TrainConfig, stats: Standardisation | None = None
            ) -> tuple[Standardisation, torch.Tensor, np.ndarray, np.ndarray]:
    """Check, standardise and split training embeddings (shared by the head and baselines).

    Returns:
        (standardisation, (N, D) float32 standardised tensor, train rows, validation rows).

    Raises:
        HeadError: raw is not a finite 2-D float array with enough rows.
    """
    raw = check_training_data(raw)
    stats = stats or Standardisation.fit(raw)
    train_rows, val_rows = split_indices(len(raw), cfg)
    return stats, torch.from_numpy(stats.apply(raw)), train_rows, val_rows


@torch.no_grad()
def encode(autoencoder: AESVCAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Teacher latents z for (N, D) standardised inputs: (N, latent_dim) float32."""
    autoencoder.eval()
    return autoencoder.encoder(x)


def fit_autoencoder(x: torch.Tensor, rows: np.ndarray, val_rows: np.ndarray | None,
                    head_cfg: HeadConfig, train_cfg: TrainConfig, epochs: int | None = None,
                    progress: bool = True) -> tuple[AESVCAutoencoder, Whitening, FitResult]:
    """Start an AE-SVC autoencoder at the whitening of ``x[rows]`` and train it.

    Args:
        x: (N, D) standardised rows.
        rows: training rows; the whitening is fitted on them.
        val_rows: held-out rows that choose the epoch (lowest AE-SVC loss, start included);
            None trains exactly ``epochs`` epochs.
        epochs: at most this many (default ``train_cfg.teacher_epochs``).

    Raises:
        HeadError: too few rows or an input narrower than the latent.
    """
    torch.manual_seed(train_cfg.seed)
    whitening = Whitening.fit(x[rows].numpy(), head_cfg.latent_dim, train_cfg.whiten_folds,
                              train_cfg.seed)
    autoencoder = AESVCAutoencoder(x.shape[1], head_cfg)
    start_teacher(autoencoder, whitening)

    def step(module: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        z, x_rec = module(batch)
        return aesvc_losses(batch, z, x_rec, train_cfg)

    judge: Judge | None = None
    if val_rows is not None and len(val_rows) >= 2:
        held_out = x[torch.from_numpy(val_rows)]

        def held_out_loss(module: nn.Module) -> dict[str, float]:
            # all held-out rows in one batch: one covariance, as the constraints are stated
            terms = validation_loss(module, step, (held_out,), len(held_out))
            return {'score': -terms['total'], **{f'aesvc.{k}': v for k, v in terms.items()}}
        judge = held_out_loss

    result = fit(autoencoder, step, (x[torch.from_numpy(rows)],),
                 [{'params': autoencoder.parameters(), 'lr': train_cfg.teacher_lr}], train_cfg,
                 train_cfg.teacher_epochs if epochs is None else epochs, judge,
                 f'AE-SVC {head_cfg.latent_dim}-d', progress)
    return autoencoder, whitening, result


def new_student(autoencoder: AESVCAutoencoder, head_cfg: HeadConfig,
                train_cfg: TrainConfig, out_dim: int | None = None) -> SS2DStudent:
    """Build a seeded student that starts as the teacher's whitening (first ``out_dim`` axes)."""
    torch.manual_seed(train_cfg.seed + 1)
    student = SS2DStudent(autoencoder.input_dim, head_cfg, out_dim)
    start_student(student, autoencoder)
    return student


def train_student(student: SS2DStudent, x: torch.Tensor, teacher: torch.Tensor,
                  rows: np.ndarray, prefix_sizes: Sequence[int], cfg: TrainConfig,
                  judge: Judge | None, epochs: int | None = None,
                  progress: bool = True) -> FitResult:
    """Distil teacher latents into ``student`` with the (SS)2D loss over ``prefix_sizes``.

    Args:
        student: from ``new_student``; trained in place.
        x: (N, D) standardised inputs.
        teacher: (N, d_t) teacher latents of the same rows.
        rows: the rows trained on.
        prefix_sizes: the sizes whose KL terms are summed.
        cfg: learning rates, tau, size weights, batch and patience.
        judge: held-out scorer choosing the epoch (see ``fitting.fit``); None trains exactly
            ``epochs`` epochs.
        epochs: at most this many (default ``cfg.epochs``).
        progress: show a progress bar (on a terminal).
    """
    def step(module: nn.Module, batch: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return ss2d_losses(z, module(batch), prefix_sizes, cfg)

    linear = [student.net.shortcut]
    residual = [p for name, p in student.named_parameters() if not name.endswith('shortcut')]
    label = f'(SS)2D {list(prefix_sizes)}' if len(prefix_sizes) > 1 else f'SSD@{prefix_sizes[0]}'
    chosen = torch.from_numpy(rows)
    return fit(student, step, (x[chosen], teacher[chosen]),
               [{'params': linear, 'lr': cfg.linear_lr}, {'params': residual, 'lr': cfg.lr}],
               cfg, cfg.epochs if epochs is None else epochs, judge, label, progress)


def kl_judge(x: torch.Tensor, teacher: torch.Tensor, val_rows: np.ndarray,
             prefix_sizes: Sequence[int], cfg: TrainConfig) -> Judge:
    """Held-out (SS)2D loss as a score (higher is better): the choice without geotags."""
    held_out = torch.from_numpy(val_rows)

    def judge(student: nn.Module) -> dict[str, float]:
        terms = validation_loss(
            student, lambda m, b, z: ss2d_losses(z, m(b), prefix_sizes, cfg),
            (x[held_out], teacher[held_out]), cfg.batch_size)
        # no per-size guard: the start reproduces the teacher exactly at its full size, so
        # any training raises that KL; the total must still beat the start's
        return {'score': -terms['total'], **{f'ss2d.{k}': v for k, v in terms.items()}}
    return judge


def geotag_judge(x: torch.Tensor, score: GeotagScore, scale: torch.Tensor) -> Judge:
    """Recall of held-out map rows among the others, scored on the centred, scaled output."""
    database = torch.from_numpy(score.database_rows)

    @torch.no_grad()
    def judge(student: nn.Module) -> dict[str, float]:
        out = student(x)
        out = (out - out[database].mean(dim=0)) * scale
        per_size = score.score(out.numpy())
        return {'score': mean_score(per_size), **{f'guard.{d}': v for d, v in per_size.items()},
                **{f'select@{d}': v for d, v in per_size.items()}}
    return judge


def fit_head(raw: np.ndarray, head_cfg: HeadConfig, train_cfg: TrainConfig,
             progress: bool = True, utm: np.ndarray | None = None,
             radius_m: float = 25.0) -> TrainedHead:
    """Train the teacher and the student on ``raw`` (no labels; geotags choose epochs).

    Args:
        raw: (N, D) backbone embeddings (any float dtype), not normalised, in capture order.
        head_cfg: latent size, hidden width and prefix sizes.
        train_cfg: loss weights, tau, size weights and optimisation settings.
        progress: show progress bars (on a terminal).
        utm: (N, 2) positions of the rows (a map's); None chooses the student's epoch by the
            held-out (SS)2D loss instead of retrieval among the rows.
        radius_m: positives radius of the geotag score.

    Returns:
        The trained head; ``report`` has the held-out terms and what was chosen.

    Raises:
        HeadError: unusable rows, size_weights that do not match prefix_sizes, or a latent
            wider than the input.
    """
    size_weights_for(head_cfg.prefix_sizes, train_cfg)   # fail before training, not after
    started = time.perf_counter()
    stats, x, train_rows, val_rows = prepare(raw, train_cfg)
    sizes = [d for d in head_cfg.prefix_sizes if d >= SELECTION_MIN_SIZE] or \
        list(head_cfg.prefix_sizes)
    autoencoder, whitening, teacher_fit = fit_autoencoder(x, train_rows, val_rows, head_cfg,
                                                          train_cfg, progress=progress)
    teacher = encode(autoencoder, x)
    scale = torch.from_numpy(whitening.output_scale(train_cfg.shrink_rank)).float()
    if utm is not None:
        geotags = GeotagScore(np.asarray(utm, np.float64), train_rows, val_rows, sizes, radius_m)
        judge = geotag_judge(x, geotags, scale)
    else:
        judge = kl_judge(x, teacher, val_rows, head_cfg.prefix_sizes, train_cfg)
    student = new_student(autoencoder, head_cfg, train_cfg)
    student_fit = train_student(student, x, teacher, train_rows, head_cfg.prefix_sizes,
                                train_cfg, judge, progress=progress)
    report = {'aesvc.epochs': teacher_fit.epoch, 'ss2d.epochs': student_fit.epoch,
              'select.start': student_fit.start['score'],
              'select.chosen': student_fit.best['score'],
              'aesvc.val_start': -teacher_fit.start['score'],
              **{k: v for k, v in teacher_fit.best.items() if k.startswith('aesvc.')},
              **{k: v for k, v in student_fit.best.items() if k.startswith(('ss2d.', 'select@'))}}
    if train_cfg.refit:
        every = np.arange(len(x))
        autoencoder, whitening, _ = fit_autoencoder(x, every, None, head_cfg, train_cfg,
                                                    teacher_fit.epoch, progress)
        teacher = encode(autoencoder, x)
        scale = torch.from_numpy(whitening.output_scale(train_cfg.shrink_rank)).float()
        student = new_student(autoencoder, head_cfg, train_cfg)
        train_student(student, x, teacher, every, head_cfg.prefix_sizes, train_cfg, None,
                      student_fit.epoch, progress)
    with torch.no_grad():
        fold_output(student, student(x).mean(dim=0), scale)
    report['seconds'] = round(time.perf_counter() - started, 2)
    log.info('head trained on %d x %d in %.1f s: %s', *x.shape, report['seconds'],
             ', '.join(f'{k}={v:.4g}' for k, v in report.items()))
    return TrainedHead(stats, autoencoder, student, report)


def train_head(raw: np.ndarray, backbone_name: str, head_cfg: HeadConfig,
               train_cfg: TrainConfig, out_path: str | os.PathLike[str],
               progress: bool = True, utm: np.ndarray | None = None) -> Path:
    """Train a head on raw backbone embeddings and write it as a head file.

    This is what ``aesvc-vpr train-head`` and the map builder call.

    Args:
        raw: (N, D) raw embeddings of the backbone named ``backbone_name`` (e.g. a map's raw).
        backbone_name: stored in the head file and checked when it is loaded.
        head_cfg, train_cfg: the settings; both are stored in the head file.
        out_path: the ``.safetensors`` file to write (atomically).
        progress: show progress bars (on a terminal).
        utm: (N, 2) positions of the rows, when known (a map's): they choose the epochs.

    Returns:
        The written path.
    """
    raw = check_training_data(raw)
    trained = fit_head(raw, head_cfg, train_cfg, progress, utm)
    return write_trained(trained, raw, backbone_name, head_cfg, train_cfg, out_path)


def write_trained(trained: TrainedHead, raw: np.ndarray, backbone_name: str,
                  head_cfg: HeadConfig, train_cfg: TrainConfig,
                  out_path: str | os.PathLike[str]) -> Path:
    """Write an in-memory head trained on ``raw`` as a head file; returns the path."""
    input_dim = raw.shape[1]
    resolved = replace(head_cfg, hidden_dim=resolve_hidden_dim(input_dim, head_cfg))
    meta = HeadMeta(backbone_name, input_dim, resolved, train_cfg, trained.standardisation,
                    DataFingerprint.of(raw), trained.report, now_utc(), package_version())
    fingerprint = save_head(out_path, meta, trained.autoencoder, trained.student)
    log.info('wrote head %s (sha256 %s)', out_path, fingerprint[:12])
    return Path(out_path)
