"""What the head is compared against, behind the Projector's interface.

Every class here has ``name``, ``input_dim``, ``output_dim``, ``prefix_sizes``, ``project(raw)``
(full size, not normalised), ``check_prefix(dim)`` and ``prefix(raw, dim)`` (L2-normalised), so
benchmarks and tests treat them and ``Projector`` alike. To keep the comparison honest, the
learned baselines see the same training rows, standardisation, split, network shape, epochs
and early stopping as the head:

- ``Truncation``: the first d raw coordinates (what a plain nested embedding would give).
- ``PCA``: principal components fitted on the same rows; a prefix keeps the top-d components.
  Each component is divided by its standard deviation to the power ``whiten_power``: 0 is PCA,
  1 PCA-whitening, values between are partial whitening (``fit_partial_whitening`` picks the
  power for each size on the map's own rows, by ``selection.GeotagScore``).
- ``AesvcEncoder``: the AE-SVC teacher latent z alone (the path without distillation).
- ``PerSize``: one model per size, e.g. SSD (``fit_ssd``: one distilled student per size, the
  paper's upper bound) or AE-SVC trained at each size (``fit_aesvc_per_size``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.headfile import Standardisation
from aesvc_vpr.head.networks import AESVCAutoencoder, SS2DStudent
from aesvc_vpr.head.projection import Projection
from aesvc_vpr.head.selection import GeotagScore
from aesvc_vpr.head.training import (encode, fit_autoencoder, kl_judge, new_student, prepare,
                                     train_student, TrainedHead)
from aesvc_vpr.index.prefix import l2_prefix


class Truncation(Projection):
    """Plain truncation of the raw embedding: the identity, prefixes cut off the raw vector."""

    name = 'truncation'

    def __init__(self, input_dim: int) -> None:
        """Accept (N, input_dim) embeddings."""
        self.input_dim = self.output_dim = input_dim
        self.prefix_sizes = (input_dim,)

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Return the raw embeddings as float32."""
        return np.asarray(self._check_input(raw), dtype=np.float32)


class PCA(Projection):
    """PCA fitted on the training rows; components sorted by decreasing variance."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, whiten_power: float,
                 variances: np.ndarray) -> None:
        """Use ``fit``; mean (D,), components (D, k) already divided by std ** whiten_power.

        ``variances`` (k,) are the components' variances on the rows fitted.
        """
        self.variances = variances
        self.name = {0.0: 'pca', 1.0: 'pca-whitened'}.get(whiten_power,
                                                          f'pca-whitened^{whiten_power:g}')
        self.whiten_power = whiten_power
        self.mean = mean
        self.components = components
        self.input_dim, self.output_dim = components.shape
        self.prefix_sizes = (self.output_dim,)

    @classmethod
    def fit(cls, raw: np.ndarray, whiten: bool = False, n_components: int = 0,
            whiten_power: float | None = None) -> PCA:
        """Fit on (N, D) raw embeddings.

        Args:
            raw: training rows.
            whiten: scale each component to unit variance (``whiten_power`` 1).
            n_components: components kept; 0 keeps min(D, N - 1).
            whiten_power: divide each component by its std to this power (overrides whiten).
        """
        power = float(whiten_power if whiten_power is not None else (1.0 if whiten else 0.0))
        data = np.asarray(raw, dtype=np.float64)
        keep = n_components or min(data.shape[1], data.shape[0] - 1)
        mean = data.mean(axis=0)
        eigval, eigvec = np.linalg.eigh(np.cov(data - mean, rowvar=False))
        order = np.argsort(eigval)[::-1][:keep]                 # largest variance first
        variances = np.maximum(eigval[order], 1e-12)
        components = eigvec[:, order] / variances ** (power / 2)
        return cls(mean.astype(np.float32), components.astype(np.float32), power, variances)

    def project(self, raw: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, k) float32 component scores."""
        raw = np.asarray(self._check_input(raw), dtype=np.float32)
        return (raw - self.mean) @ self.components


class _TorchProjection(Projection):
    """A torch module applied to standardised inputs."""

    def __init__(self, name: str, standardisation: Standardisation, module: nn.Module,
                 output_dim: int) -> None:
        self.name = name
        self.standardisation = standardisation
        self.module = module.eval()
        self.input_dim = standardisation.mean.shape[0]
        self.output_dim = output_dim
        self.prefix_sizes = (output_dim,)

    def project(self, raw: np.ndarray) -> np.ndarray:
        """(N, input_dim) -> (N, output_dim) float32, not normalised."""
        x = torch.from_numpy(self.standardisation.apply(self._check_input(raw)))
        with torch.inference_mode():
            return self.module(x).numpy()


class AesvcEncoder(_TorchProjection):
    """The AE-SVC encoder alone: its latent z, used whole or truncated."""

    def __init__(self, standardisation: Standardisation, autoencoder: AESVCAutoencoder,
                 name: str = 'aesvc') -> None:
        """Wrap a trained autoencoder (e.g. ``TrainedHead`` or ``HeadFile`` fields)."""
        super().__init__(name, standardisation, autoencoder.encoder, autoencoder.latent_dim)


class StudentProjection(_TorchProjection):
    """One distilled student (an SSD member)."""

    def __init__(self, standardisation: Standardisation, student: SS2DStudent,
                 name: str = 'student') -> None:
        """Wrap a trained student and the standardisation it was trained with."""
        super().__init__(name, standardisation, student, student.output_dim)


class PerSize(Projection):
    """One projection per size: prefix d uses the first d values of the size-d model."""

    def __init__(self, name: str, members: dict[int, Projection]) -> None:
        """members: {size: projection with output_dim >= size}."""
        self.name = name
        self.members = dict(sorted(members.items()))
        self.prefix_sizes = tuple(self.members)
        self.output_dim = self.prefix_sizes[-1]
        self.input_dim = next(iter(self.members.values())).input_dim

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Return the largest member's output, (N, output_dim) float32."""
        return self.members[self.output_dim].project(raw)

    def check_prefix(self, dim: int) -> int:
        """Accept only the trained sizes; anything else is a HeadError listing them."""
        if dim not in self.members:
            raise HeadError(f'{self.name}: no model for size {dim}; sizes {self.prefix_sizes}')
        return dim

    def prefix(self, raw: np.ndarray, dim: int) -> np.ndarray:
        """(N, dim) float32 L2-normalised output of the size-``dim`` model."""
        return l2_prefix(self.members[self.check_prefix(dim)].project(raw), dim)


def fit_ssd(raw: np.ndarray, teacher: TrainedHead, sizes: Sequence[int], head_cfg: HeadConfig,
            train_cfg: TrainConfig, progress: bool = True) -> PerSize:
    """SSD: for each size d, a student with a d-wide output distilled with the KL at d only.

    The teacher, standardisation, split, student hidden width and training settings are those
    of the (SS)2D head, so the only difference is one model per size instead of one for all.
    """
    stats, x, train_rows, val_rows = prepare(raw, train_cfg, teacher.standardisation)
    z = encode(teacher.autoencoder, x)
    members: dict[int, Projection] = {}
    for size in sizes:
        student = new_student(teacher.autoencoder, head_cfg, train_cfg, out_dim=size)
        train_student(student, x, z, train_rows, (size,), train_cfg,
                      kl_judge(x, z, val_rows, (size,), train_cfg), progress=progress)
        members[size] = StudentProjection(stats, student, f'ssd@{size}')
    return PerSize('ssd', members)


def fit_aesvc_per_size(raw: np.ndarray, sizes: Sequence[int], head_cfg: HeadConfig,
                       train_cfg: TrainConfig, progress: bool = True) -> PerSize:
    """AE-SVC trained separately with latent size d for each d (PAPER.md's per-size AE-SVC)."""
    stats, x, train_rows, val_rows = prepare(raw, train_cfg)
    members: dict[int, Projection] = {}
    for size in sizes:
        cfg = HeadConfig(size, head_cfg.hidden_dim, (size,))
        autoencoder, _, _ = fit_autoencoder(x, train_rows, val_rows, cfg, train_cfg,
                                            progress=progress)
        members[size] = AesvcEncoder(stats, autoencoder, f'aesvc@{size}')
    return PerSize('aesvc-per-size', members)


class PowerPerSize(PerSize):
    """Partial whitening with a power chosen per prefix size: prefix d uses ``members[d]``."""

    def __init__(self, members: dict[int, PCA]) -> None:
        """members: {size: PCA whose first ``size`` components serve that size}."""
        super().__init__('pca-whitened^tuned', dict(members))
        self.powers = {size: pca.whiten_power for size, pca in self.members.items()}


def fit_partial_whitening(raw: np.ndarray, utm: np.ndarray, sizes: Sequence[int],
                          powers: Sequence[float] = tuple(np.round(np.arange(0, 1.01, 0.1), 2)),
                          folds: int = 5, seed: int = 0) -> PowerPerSize:
    """PCA with the whitening power that scores best on the map's own rows, per size.

    No query labels: each fold of the rows searches the others with a PCA fitted without it
    (``selection.GeotagScore``, route neighbours excluded). Ties go to the weaker power.

    Args:
        raw: (N, D) map rows in capture order.
        utm: (N, 2) their positions.
        sizes: prefix sizes to tune.
        powers: candidate powers (0: PCA, 1: PCA-whitening).
        folds: rows are held out in this many folds.
        seed: the folds' permutation.
    """
    raw = np.asarray(raw, np.float64)
    order = np.random.default_rng(seed).permutation(len(raw))
    totals = {p: dict.fromkeys(sizes, 0.0) for p in powers}
    for fold in range(folds):
        held = np.zeros(len(raw), bool)
        held[order[fold::folds]] = True
        rest, queries = np.flatnonzero(~held), np.flatnonzero(held)
        score = GeotagScore(utm, rest, queries, sizes)
        base = PCA.fit(raw[rest], n_components=max(sizes))
        for p in powers:
            pca = _with_power(base, p)
            for d, v in score.score(pca.project(raw)).items():
                totals[p][d] += v / folds
    full = PCA.fit(raw, n_components=max(sizes))
    chosen = {d: min(powers, key=lambda p: (-totals[p][d], p)) for d in sizes}
    return PowerPerSize({d: _with_power(full, chosen[d]) for d in sizes})


def _with_power(pca: PCA, power: float) -> PCA:
    """Rescale the components from their power to ``power``."""
    rescale = pca.variances ** ((pca.whiten_power - power) / 2)
    return PCA(pca.mean, (pca.components * rescale).astype(np.float32), float(power),
               pca.variances)
