"""AE-SVC and (SS)2D losses as plain functions of batches (PAPER.md: AE-SVC and (SS)2D losses).

Scaling conventions (the paper gives none, so these are ours and are stored nowhere else):
``cov`` is the sum of squared off-diagonal entries of Cov(z) divided by the latent size, ``var``
the mean of (diag Cov(z) - 1)^2 and ``mean`` the mean of mean(z)^2. ``cov`` and ``var`` are the
two parts of ||Cov(z) - I||_F^2 (up to those divisors), so both are 0 exactly for centred,
whitened data. z is never L2-normalised here: unit variance and unit norm would conflict.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from aesvc_vpr.config import TrainConfig
from aesvc_vpr.errors import HeadError


def reconstruction_loss(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Mean squared error between (B, D) inputs and their reconstructions."""
    return F.mse_loss(x_rec, x)


def covariance_losses(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Off-diagonal (decorrelation) and diagonal (unit variance) parts of Cov(z) -> I.

    Args:
        z: (B, d) latent batch, B >= 2.

    Returns:
        (cov, var): sum of squared off-diagonal covariances / d, and mean (variance - 1)^2.
    """
    batch, dim = z.shape
    centred = z - z.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / (batch - 1)                  # (d, d), unbiased
    diag = torch.diagonal(cov)
    off_diag = cov.pow(2).sum() - diag.pow(2).sum()
    return off_diag / dim, (diag - 1.0).pow(2).mean()


def mean_loss(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the squared batch mean: 0 when every dimension is centred."""
    return z.mean(dim=0).pow(2).mean()


def aesvc_losses(x: torch.Tensor, z: torch.Tensor, x_rec: torch.Tensor,
                 cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """All AE-SVC terms and their weighted sum.

    Args:
        x: (B, D) standardised inputs; z: (B, d) latents; x_rec: (B, D) reconstructions.
        cfg: the weights w_rec, w_cov, w_var and w_mean.

    Returns:
        {'rec', 'cov', 'var', 'mean', 'total'} scalar tensors; only 'total' is weighted.
    """
    cov, var = covariance_losses(z)
    terms = {'rec': reconstruction_loss(x, x_rec), 'cov': cov, 'var': var, 'mean': mean_loss(z)}
    terms['total'] = (cfg.w_rec * terms['rec'] + cfg.w_cov * cov + cfg.w_var * var
                      + cfg.w_mean * terms['mean'])
    return terms


def similarity_log_probs(embeddings: torch.Tensor, tau: float) -> torch.Tensor:
    """Row log-softmax of the cosine-similarity matrix / tau, self-pairs left out.

    Self-similarity is 1 for every row whatever the embedding, so at tau = 0.1 it would take
    almost all of each row's mass and hide the structure being distilled. The diagonal is
    removed rather than masked with a large negative logit: a finite mask is not negligible
    at small tau (cos / tau reaches 1e4 at tau = 1e-4), and -inf gives inf - inf in the KL.

    Args:
        embeddings: (B, d) rows, not necessarily normalised; B >= 2.
        tau: softmax temperature.

    Returns:
        (B, B - 1) log-probabilities over the other rows; each row's probabilities sum to 1.
    """
    unit = F.normalize(embeddings, dim=1)
    logits = unit @ unit.T / tau
    count = logits.shape[0]
    # (B, B) -> (B, B - 1): drop the diagonal, keep every row's other entries in order
    off_diagonal = logits.flatten()[1:].view(count - 1, count + 1)[:, :-1].reshape(count, -1)
    return F.log_softmax(off_diagonal, dim=1)


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(p_row || q_row) for (B, K) log-probability matrices."""
    return F.kl_div(log_q, log_p, reduction='sum', log_target=True) / log_p.shape[0]


def similarity_kl(teacher: torch.Tensor, student: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(softmax_row(S_T / tau) || softmax_row(S_S / tau)), averaged over rows.

    Args:
        teacher: (B, d_t) teacher embeddings (not normalised); B >= 2.
        student: (B, d_s) student embeddings or one of their prefixes (not normalised).
        tau: softmax temperature on cosine similarities.

    Returns:
        Scalar >= 0; 0 when both give the same cosine matrix.
    """
    return kl_rows(similarity_log_probs(teacher, tau), similarity_log_probs(student, tau))


def size_weights_for(prefix_sizes: Sequence[int], cfg: TrainConfig) -> tuple[float, ...]:
    """Per-size weights of the (SS)2D sum: ``cfg.size_weights``, or equal weights when empty.

    Raises:
        HeadError: the number of weights differs from the number of prefix sizes.
    """
    if not cfg.size_weights:
        return (1.0,) * len(prefix_sizes)
    if len(cfg.size_weights) != len(prefix_sizes):
        raise HeadError(
            f'train.size_weights has {len(cfg.size_weights)} values but head.prefix_sizes has '
            f'{len(prefix_sizes)} sizes {tuple(prefix_sizes)}; give one weight per size')
    return cfg.size_weights


def ss2d_losses(teacher: torch.Tensor, student: torch.Tensor, prefix_sizes: Sequence[int],
                cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """(SS)2D: the similarity KL for every nested prefix of the student, weighted and summed.

    Args:
        teacher: (B, d_t) AE-SVC latents z.
        student: (B, d_s) student outputs, d_s >= max(prefix_sizes).
        prefix_sizes: increasing prefix sizes.
        cfg: tau, tau_size_exponent and size_weights. The student's temperature at size d is
            tau * (d_t / d) ** tau_size_exponent: cosines of d values spread about sqrt(d_t / d)
            times wider than the teacher's, so one tau for every size asks small prefixes for
            a sharper similarity row than they can give (docs/head.md, Findings).

    Returns:
        {'kl@<d>' for each size, 'total'} scalar tensors; 'total' is the weighted sum.
    """
    weights = size_weights_for(prefix_sizes, cfg)
    # cosines of the centred output: a shared offset would lift every similarity alike, and
    # the output is centred on the map before it is searched
    student = student - student.mean(dim=0, keepdim=True)
    log_p = similarity_log_probs(teacher, cfg.tau)        # shared by every size
    teacher_dim = teacher.shape[1]
    terms = {f'kl@{d}': kl_rows(log_p, similarity_log_probs(
        student[:, :d], cfg.tau * (teacher_dim / d) ** cfg.tau_size_exponent))
        for d in prefix_sizes}
    terms['total'] = sum(w * terms[f'kl@{d}'] for w, d in zip(weights, prefix_sizes))
    return terms
