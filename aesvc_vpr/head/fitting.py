"""The training loop every head network shares: minibatch AdamW, chosen by a held-out judge.

The judge scores the network on held-out data (higher is better). The starting weights are
scored too, as epoch 0, and an epoch is eligible only if none of its guarded scores (one per
prefix size) falls below the start's: training can then never return a network worse than the
closed-form start it began from, on the judge's own measure.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import TrainConfig

LossFn = Callable[..., dict[str, torch.Tensor]]
# module -> {'score': higher is better, 'guard.<name>': must not fall below epoch 0's}
Judge = Callable[[nn.Module], dict[str, float]]


@dataclass
class FitResult:
    """What a fit chose: the epoch (0 is the start), its scores and the start's."""

    epoch: int = 0
    epochs_run: int = 0
    start: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (0: unchanged), restoring the count afterwards.

    One thread is the default: these networks are small, and on a shared machine extra OpenMP
    threads spin against other processes and run many times slower, not faster.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit(module: nn.Module, loss_fn: LossFn, train: Sequence[torch.Tensor],
        param_groups: list[dict], cfg: TrainConfig, epochs: int, judge: Judge | None = None,
        desc: str = 'training', progress: bool = True) -> FitResult:
    """Train ``module`` in place and leave it holding the weights of the chosen epoch.

    Args:
        module: the network; trained in place, returned in eval mode.
        loss_fn: (module, *batch tensors) -> dict of scalar terms with a 'total' key.
        train: tensors sharing their first (row) dimension; whole batches only, since the
            covariance and similarity losses are batch statistics.
        param_groups: AdamW parameter groups (each with its 'lr').
        cfg: batch_size, weight_decay, patience, seed, threads.
        epochs: at most this many epochs; with a judge, stop after ``cfg.patience`` epochs
            without a better eligible score, without one run them all.
        judge: held-out scorer; None keeps the last epoch.
        desc: progress-bar label.
        progress: show a progress bar (on a terminal).
    """
    with torch_threads(cfg.threads):
        result = FitResult()
        best_state = None
        if judge is not None:
            result.start = result.best = judge(module.eval())
            best_state = copy.deepcopy(module.state_dict())
        optimiser = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        rows = train[0].shape[0]
        batch = min(cfg.batch_size, rows)
        stale = 0
        for epoch in progress_bar(range(1, epochs + 1), desc=desc, unit='epoch',
                                  enabled=progress, leave=False):
            module.train()
            order = torch.randperm(rows, generator=generator)
            for start in range(0, rows - batch + 1, batch):
                chosen = order[start:start + batch]
                loss = loss_fn(module, *(t[chosen] for t in train))['total']
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            result.epochs_run = epoch
            if judge is None:
                continue
            scores = judge(module.eval())
            if _eligible(scores, result.start) and scores['score'] > result.best['score']:
                result.epoch, result.best, stale = epoch, scores, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if judge is None:
            result.epoch = result.epochs_run
        else:
            module.load_state_dict(best_state)
        module.eval()
        return result


def _eligible(scores: dict[str, float], start: dict[str, float]) -> bool:
    return all(value >= start[key] for key, value in scores.items() if key.startswith('guard.'))


@torch.no_grad()
def validation_loss(module: nn.Module, loss_fn: LossFn, tensors: Sequence[torch.Tensor],
                    batch: int) -> dict[str, float]:
    """Loss terms over fixed-order batches of ``batch`` to ``2 * batch - 1`` rows, row-weighted.

    The covariance and similarity terms are batch statistics, so a short remainder batch (two
    rows: an unbiased covariance divided by n - 1 = 1) would weigh as much as a full one; the
    rows are split into nearly equal batches instead, none smaller than ``batch``.
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
