"""Training a head: standardise, train AE-SVC (the teacher), then distil it into the student.

A plain loop, on CPU by default. The run is seeded: the split, the initial weights and the batch
order come from ``TrainConfig.seed``, so the same data, config and thread count give the same
weights. Each phase holds out ``val_fraction`` of the rows, keeps the weights with the best
validation loss and stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field, replace
import logging
import os
from pathlib import Path
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.headfile import (DataFingerprint, HeadMeta, now_utc, package_version,
                                     save_head, Standardisation)
from aesvc_vpr.head.losses import aesvc_losses, size_weights_for, ss2d_losses
from aesvc_vpr.head.networks import AESVCAutoencoder, resolve_hidden_dim, ShortcutMLP, SS2DStudent

log = logging.getLogger(__name__)

STANDARDISE_ROWS = 4096   # rows sampled for the data-dependent output initialisation
LossFn = Callable[..., dict[str, torch.Tensor]]


@dataclass
class TrainedHead:
    """An in-memory head: what a head file stores, before it is written."""

    standardisation: Standardisation
    autoencoder: AESVCAutoencoder
    student: SS2DStudent
    report: dict[str, float] = field(default_factory=dict)   # 'aesvc.rec', 'ss2d.kl@16', ...


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


def fit(module: nn.Module, loss_fn: LossFn, train: Sequence[torch.Tensor],
        val: Sequence[torch.Tensor], cfg: TrainConfig, desc: str, progress: bool = True,
        after_epoch: Callable[[], None] | None = None) -> tuple[dict[str, float], int]:
    """Minibatch AdamW on ``loss_fn(module, *batch)['total']`` with early stopping.

    Args:
        module: trained in place; ends holding the weights of the best validation epoch.
        loss_fn: (module, *batch tensors) -> dict of scalar terms with a 'total' key.
        train, val: tensors sharing their first (row) dimension.
        cfg: epochs, batch_size, lr, weight_decay, patience, seed.
        desc: progress-bar label.
        progress: show a tqdm bar.
        after_epoch: called after each epoch's updates, before validation.

    Returns:
        (validation loss terms of the best epoch, number of epochs run).
    """
    with torch_threads(cfg.threads):
        return _fit(module, loss_fn, train, val, cfg, desc, progress, after_epoch)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (0: unchanged), restoring the count afterwards.

    One thread is the default: these MLPs are small, and on a shared machine extra OpenMP
    threads spin against other processes and run many times slower, not faster.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit(module: nn.Module, loss_fn: LossFn, train: Sequence[torch.Tensor],
         val: Sequence[torch.Tensor], cfg: TrainConfig, desc: str, progress: bool,
         after_epoch: Callable[[], None] | None) -> tuple[dict[str, float], int]:
    optimiser = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    n_train = train[0].shape[0]
    batch = min(cfg.batch_size, n_train)
    best: tuple[float, dict[str, float], dict[str, torch.Tensor]] | None = None
    stale = epoch = 0
    bar = tqdm(range(cfg.epochs), desc=desc, unit='epoch', disable=not progress, leave=False)
    for epoch in bar:
        module.train()
        order = torch.randperm(n_train, generator=generator)
        # whole batches only: the covariance and similarity losses are batch statistics
        for start in range(0, n_train - batch + 1, batch):
            rows = order[start:start + batch]
            loss = loss_fn(module, *(t[rows] for t in train))['total']
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if after_epoch is not None:
            after_epoch()
        terms = validation_loss(module, loss_fn, val, batch)
        bar.set_postfix(val=f'{terms["total"]:.4g}')
        if best is None or terms['total'] < best[0]:
            best = (terms['total'], terms, copy.deepcopy(module.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    bar.close()
    assert best is not None
    module.load_state_dict(best[2])
    module.eval()
    return best[1], epoch + 1


@torch.no_grad()
def validation_loss(module: nn.Module, loss_fn: LossFn, tensors: Sequence[torch.Tensor],
                    batch: int) -> dict[str, float]:
    """Loss terms over fixed-order batches of ``batch`` to ``2 * batch - 1`` rows, row-weighted.

    The covariance and similarity terms are batch statistics, so a short remainder batch (two
    rows: an unbiased covariance divided by n - 1 = 1) would weigh as much as a full one; the
    rows are split into nearly equal batches instead, none smaller than the training batch.
    """
    module.eval()
    count = tensors[0].shape[0]
    parts = np.array_split(np.arange(count), max(1, count // batch))
    sums: dict[str, float] = {}
    for rows in parts:
        chunk = torch.from_numpy(rows)
        terms = loss_fn(module, *(t[chunk] for t in tensors))
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(rows)
    return {key: value / count for key, value in sums.items()}


def prepare(raw: np.ndarray, cfg: TrainConfig, stats: Standardisation | None = None
            ) -> tuple[Standardisation, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check, standardise and split training embeddings (shared by the head and baselines).

    Args:
        raw: (N, D) raw embeddings.
        cfg: val_fraction and seed of the split.
        stats: standardisation to apply; None fits one on ``raw``.

    Returns:
        (standardisation, (N, D) float32 standardised tensor, train rows, validation rows).

    Raises:
        HeadError: raw is not a finite 2-D float array with enough rows.
    """
    raw = check_training_data(raw)
    stats = stats or Standardisation.fit(raw)
    train_rows, val_rows = (torch.from_numpy(i) for i in split_indices(len(raw), cfg))
    return stats, torch.from_numpy(stats.apply(raw)), train_rows, val_rows


def fit_autoencoder(x: torch.Tensor, train_rows: torch.Tensor, val_rows: torch.Tensor,
                    head_cfg: HeadConfig, train_cfg: TrainConfig, progress: bool = True
                    ) -> tuple[AESVCAutoencoder, dict[str, float], int]:
    """Train an AE-SVC autoencoder on standardised rows (seeded initial weights).

    Returns:
        (autoencoder in eval mode, best validation loss terms, epochs run).
    """
    torch.manual_seed(train_cfg.seed)
    autoencoder = AESVCAutoencoder(x.shape[1], head_cfg)
    standardise_output(autoencoder.encoder, x[train_rows])
    terms, epochs = fit(autoencoder, _aesvc_step(train_cfg), (x[train_rows],), (x[val_rows],),
                        train_cfg, f'AE-SVC {head_cfg.latent_dim}-d', progress,
                        lambda: recentre(autoencoder, x[train_rows]))
    return autoencoder, terms, epochs


def sample_rows(x: torch.Tensor, count: int = STANDARDISE_ROWS, seed: int = 0) -> torch.Tensor:
    """Up to ``count`` rows of ``x`` drawn at random (seeded), in their original order.

    Map rows come in route order, so the first rows are one part of town: statistics taken on
    them would be geographically biased.
    """
    if len(x) <= count:
        return x
    rows = np.sort(np.random.default_rng(seed).choice(len(x), count, replace=False))
    return x[torch.from_numpy(rows)]


@torch.no_grad()
def recentre(autoencoder: AESVCAutoencoder, x: torch.Tensor) -> None:
    """Shift the latent to zero mean on ``x`` and fold the shift into the decoder.

    Reconstruction, covariance and variance terms are all exactly invariant to a constant shift
    of z (the decoder's first bias absorbs it), so this changes nothing but the mean term. The
    mean term alone pulls the latent mean back only slowly while the weights move fast, so
    without this step the mean cosine stays far from 0 within the epoch budget.
    """
    shift = autoencoder.encoder(sample_rows(x)).mean(dim=0)
    first = autoencoder.decoder[0]
    first.bias.add_(first.weight @ shift)
    autoencoder.encoder[-1].bias.sub_(shift)


def fit_head(raw: np.ndarray, head_cfg: HeadConfig, train_cfg: TrainConfig,
             progress: bool = True) -> TrainedHead:
    """Train AE-SVC on ``raw`` (no labels), then the (SS)2D student against its latent.

    Args:
        raw: (N, D) backbone embeddings (any float dtype), not normalised.
        head_cfg: latent size, hidden width and prefix sizes.
        train_cfg: loss weights, tau, size weights and optimisation settings.
        progress: show tqdm bars.

    Returns:
        The trained head, with the final validation loss terms in ``report``.

    Raises:
        HeadError: raw is not a finite 2-D array with enough rows, or size_weights do not
            match prefix_sizes.
    """
    size_weights_for(head_cfg.prefix_sizes, train_cfg)   # fail before training, not after
    started = time.perf_counter()
    stats, x, train_rows, val_rows = prepare(raw, train_cfg)
    autoencoder, ae_terms, ae_epochs = fit_autoencoder(x, train_rows, val_rows, head_cfg,
                                                       train_cfg, progress)
    teacher = encode(autoencoder, x)
    student = new_student(x[train_rows], head_cfg, train_cfg)
    student_terms, student_epochs = train_student(
        student, x[train_rows], teacher[train_rows], x[val_rows], teacher[val_rows],
        head_cfg.prefix_sizes, train_cfg, progress)
    report = {f'aesvc.{k}': v for k, v in ae_terms.items()}
    report.update({f'ss2d.{k}': v for k, v in student_terms.items()})
    report.update({'aesvc.epochs': ae_epochs, 'ss2d.epochs': student_epochs,
                   'seconds': round(time.perf_counter() - started, 2)})
    log.info('head trained on %d x %d in %.1f s: %s', *x.shape, report['seconds'],
             ', '.join(f'{k}={v:.4g}' for k, v in report.items()))
    return TrainedHead(stats, autoencoder, student, report)


def train_student(student: nn.Module, x_train: torch.Tensor, teacher_train: torch.Tensor,
                  x_val: torch.Tensor, teacher_val: torch.Tensor, prefix_sizes: Sequence[int],
                  cfg: TrainConfig, progress: bool = True) -> tuple[dict[str, float], int]:
    """Distil teacher latents into ``student`` with the (SS)2D loss over ``prefix_sizes``.

    Args:
        student: maps (B, D) standardised inputs to (B, >= max(prefix_sizes)).
        x_train, x_val: (N, D) standardised inputs; teacher_*: (N, d_t) teacher latents.

    Returns:
        (validation loss terms of the best epoch, epochs run).
    """
    def step(module: nn.Module, x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return ss2d_losses(z, module(x), prefix_sizes, cfg)

    label = f'(SS)2D {list(prefix_sizes)}' if len(prefix_sizes) > 1 else f'SSD@{prefix_sizes[0]}'
    return fit(student, step, (x_train, teacher_train), (x_val, teacher_val), cfg, label,
               progress)


def new_student(x: torch.Tensor, head_cfg: HeadConfig, train_cfg: TrainConfig,
                out_dim: int | None = None) -> SS2DStudent:
    """Build a seeded student whose outputs start centred with unit variance on ``x`` (N, D)."""
    torch.manual_seed(train_cfg.seed + 1)
    student = SS2DStudent(x.shape[1], head_cfg, out_dim)
    standardise_output(student.net, x)
    return student


@torch.no_grad()
def standardise_output(net: nn.Sequential, x: torch.Tensor) -> None:
    """Rescale the last Linear of ``net`` so that net(x) has zero mean, unit variance per output.

    A data-dependent initialisation: the latent starts centred and unit-variance, so the
    mean and variance terms hold it there instead of spending the first epochs getting there.
    """
    y = net(sample_rows(x))
    mean, std = y.mean(dim=0), y.std(dim=0).clamp_min(1e-6)
    last = net[-1]
    last.weight.div_(std[:, None])
    last.bias.sub_(mean).div_(std)
    if isinstance(net, ShortcutMLP):
        net.shortcut.div_(std[:, None])


def _aesvc_step(cfg: TrainConfig) -> LossFn:
    def step(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z, x_rec = module(x)
        return aesvc_losses(x, z, x_rec, cfg)
    return step


@torch.no_grad()
def encode(autoencoder: AESVCAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Teacher latents z for (N, D) standardised inputs: (N, latent_dim) float32."""
    autoencoder.eval()
    return autoencoder.encoder(x)


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


def train_head(raw: np.ndarray, backbone_name: str, head_cfg: HeadConfig,
               train_cfg: TrainConfig, out_path: str | os.PathLike[str],
               progress: bool = True) -> Path:
    """Train a head on raw backbone embeddings and write it as a head file.

    This is what ``aesvc-vpr train-head`` and the map builder call.

    Args:
        raw: (N, D) raw embeddings of the backbone named ``backbone_name`` (e.g. a map's raw).
        backbone_name: stored in the head file and checked when it is loaded.
        head_cfg, train_cfg: the settings; both are stored in the head file.
        out_path: the ``.safetensors`` file to write (atomically).
        progress: show tqdm bars.

    Returns:
        The written path.
    """
    raw = check_training_data(raw)
    trained = fit_head(raw, head_cfg, train_cfg, progress)
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
