"""The closed-form start of the head: PCA-whitening of the map's rows, as network weights.

PCA-whitening meets every AE-SVC constraint exactly (zero mean, identity covariance) and, on the
whole space, reconstructs its input exactly: it is the linear special case of the AE-SVC
objective. The teacher starts there, with nonlinear residuals that start at zero, so training
begins at the linear optimum of its own losses. Two corrections make the closed form generalise:

- Each axis is whitened with its held-out variance (the rows' projection on axes fitted without
  them, K folds) when that is larger: the training variance of the weak tail axes is an
  underestimate, and dividing by it amplifies noise (held-out variance was 1.6-2.4x the training
  variance at axis 256 on the development sets).
- The student's output is scaled by ``sqrt(lam / (lam + lam_r))`` (regularised whitening): the
  strong axes stay whitened, the weak ones are damped, so long prefixes do not weigh noise
  like signal. ``r`` is ``TrainConfig.shrink_rank``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.networks import AESVCAutoencoder, ShortcutMLP, SS2DStudent


@dataclass(frozen=True)
class Whitening:
    """Principal axes of standardised rows and the variance each axis is whitened with."""

    axes: np.ndarray       # (D, k) float64, orthonormal columns, largest variance first
    variances: np.ndarray  # (k,) float64, held-out where larger than the training variance

    @classmethod
    def fit(cls, x: np.ndarray, k: int, folds: int = 5, seed: int = 0) -> Whitening:
        """Fit on (N, D) centred, standardised rows.

        With fewer rows than axes, the axes beyond the rows' span are whitened with a variance
        floor (a millionth of the largest), so they are damped rather than blown up.

        Raises:
            HeadError: k > D, or fewer than 2 rows.
        """
        x = np.asarray(x, np.float64)
        if not 1 <= k <= x.shape[1] or x.shape[0] < 2:
            raise HeadError(f'a {k}-d whitening start needs k <= the input size {x.shape[1]} '
                            f'and at least 2 rows, got {x.shape[0]}; lower head.latent_dim')
        axes, variances = _principal_axes(x, k)
        if folds > 1 and x.shape[0] >= 2 * folds:
            held_out = np.zeros(k)
            order = np.random.default_rng(seed).permutation(x.shape[0])
            for fold in range(folds):
                rows = np.zeros(x.shape[0], bool)
                rows[order[fold::folds]] = True
                fold_axes, _ = _principal_axes(x[~rows], k)
                held_out += ((x[rows] - x[~rows].mean(axis=0)) @ fold_axes).var(axis=0) / folds
            variances = np.maximum(variances, held_out)
        return cls(axes, np.maximum(variances, 1e-6 * max(float(variances[0]), 1e-12)))

    def output_scale(self, rank: int) -> np.ndarray:
        """(k,) ``sqrt(lam / (lam + lam_rank))``; all ones for rank 0 (full whitening)."""
        if rank <= 0:
            return np.ones_like(self.variances)
        pivot = self.variances[min(rank, len(self.variances)) - 1]
        return np.sqrt(self.variances / (self.variances + pivot))


def _principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    centred = x - x.mean(axis=0)
    eigval, eigvec = np.linalg.eigh(centred.T @ centred / (len(x) - 1))
    order = np.argsort(eigval)[::-1][:k]
    return eigvec[:, order], eigval[order]


@torch.no_grad()
def start_teacher(autoencoder: AESVCAutoencoder, whitening: Whitening) -> None:
    """Make the encoder the whitening and the decoder its inverse; residuals start at zero.

    Raises:
        HeadError: the networks have no linear path (head.shortcut and head.decoder_shortcut).
    """
    encoder, decoder = autoencoder.encoder, autoencoder.decoder
    if not isinstance(encoder, ShortcutMLP) or not isinstance(decoder, ShortcutMLP):
        raise HeadError('the whitening start needs head.shortcut=1 and head.decoder_shortcut=1')
    root = np.sqrt(whitening.variances)
    encoder.shortcut.copy_(torch.from_numpy((whitening.axes / root).T).float())
    decoder.shortcut.copy_(torch.from_numpy(whitening.axes * root).float())
    for net in (encoder, decoder):
        net[-1].weight.zero_()
        net[-1].bias.zero_()


@torch.no_grad()
def start_student(student: SS2DStudent, autoencoder: AESVCAutoencoder) -> None:
    """Start the student as the teacher's linear whitening, its residual at zero.

    Its prefixes are then the teacher's ordered axes from the first step.

    Raises:
        HeadError: the student has no linear path, or another output size than the teacher.
    """
    net = student.net
    if not isinstance(net, ShortcutMLP) or net.shortcut.shape[0] > \
            autoencoder.encoder.shortcut.shape[0]:
        raise HeadError("the student needs head.shortcut=1 and at most the teacher's size")
    net.shortcut.copy_(autoencoder.encoder.shortcut[:net.shortcut.shape[0]])
    net[-1].weight.zero_()
    net[-1].bias.zero_()


@torch.no_grad()
def fold_output(student: SS2DStudent, shift: torch.Tensor, scale: torch.Tensor) -> None:
    """Make the student output ``(y - shift) * scale`` by changing its last layers only.

    The node and the map then need nothing new: the scaled, centred output is the head's
    output, and its prefixes are searched as before.
    """
    net = student.net
    net.shortcut.mul_(scale[:, None])
    net[-1].weight.mul_(scale[:, None])
    net[-1].bias.sub_(shift).mul_(scale)
