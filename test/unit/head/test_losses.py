"""Loss math: exact zeros where the constraints hold, hand-computed values, and gradient flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import ConfigError, HeadError
from aesvc_vpr.head.losses import (aesvc_losses, covariance_losses, kl_rows, mean_loss,
                                   reconstruction_loss, similarity_kl, similarity_log_probs,
                                   ss2d_losses)
from aesvc_vpr.head.networks import AESVCAutoencoder, SS2DStudent


def whitened(batch: int, dim: int, seed: int = 0) -> torch.Tensor:
    """(batch, dim) float64 rows with mean exactly 0 and unbiased covariance exactly I."""
    x = np.random.default_rng(seed).standard_normal((batch, dim)) @ np.diag(np.arange(1, dim + 1))
    x -= x.mean(axis=0)
    cov = x.T @ x / (batch - 1)
    x = x @ np.linalg.inv(np.linalg.cholesky(cov)).T
    return torch.from_numpy(x)


def test_covariance_and_mean_losses_are_zero_for_centred_whitened_data():
    z = whitened(64, 8)
    cov, var = covariance_losses(z)
    assert float(cov) == pytest.approx(0.0, abs=1e-20)
    assert float(var) == pytest.approx(0.0, abs=1e-20)
    assert float(mean_loss(z)) == pytest.approx(0.0, abs=1e-20)


def test_covariance_losses_are_positive_and_split_correctly():
    z = whitened(64, 8)
    mixed = z @ torch.eye(8, dtype=z.dtype).index_fill(1, torch.tensor([1]), 0.5)  # correlate
    cov, var = covariance_losses(mixed)
    assert float(cov) > 1e-3
    scaled = z * 2.0                       # still uncorrelated, variance 4
    cov, var = covariance_losses(scaled)
    assert float(cov) == pytest.approx(0.0, abs=1e-18)
    assert float(var) == pytest.approx(9.0)          # (4 - 1)^2 on every dimension


def test_covariance_losses_match_a_numpy_computation():
    z = torch.randn(50, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    c = np.cov(z.numpy(), rowvar=False)
    off = c - np.diag(np.diag(c))
    cov, var = covariance_losses(z)
    assert float(cov) == pytest.approx((off ** 2).sum() / 5)
    assert float(var) == pytest.approx(((np.diag(c) - 1) ** 2).mean())


def test_mean_and_reconstruction_losses():
    z = whitened(32, 4) + torch.tensor([1.0, -2.0, 0.0, 3.0], dtype=torch.float64)
    assert float(mean_loss(z)) == pytest.approx((1 + 4 + 0 + 9) / 4)
    x = torch.arange(6.0).reshape(2, 3)
    assert float(reconstruction_loss(x, x)) == 0.0
    assert float(reconstruction_loss(x, x + 2.0)) == pytest.approx(4.0)


def test_aesvc_total_is_the_weighted_sum():
    cfg = TrainConfig(w_rec=2.0, w_cov=3.0, w_var=5.0, w_mean=7.0)
    x = torch.randn(16, 6)
    z, x_rec = torch.randn(16, 4) + 1.0, torch.randn(16, 6)
    terms = aesvc_losses(x, z, x_rec, cfg)
    expected = 2 * terms['rec'] + 3 * terms['cov'] + 5 * terms['var'] + 7 * terms['mean']
    assert float(terms['total']) == pytest.approx(float(expected))
    assert min(float(terms[k]) for k in ('rec', 'cov', 'var', 'mean')) > 0


def test_kl_is_zero_for_equal_or_cosine_equivalent_student():
    teacher = torch.randn(40, 12, generator=torch.Generator().manual_seed(2))
    rotation, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(3)))
    assert float(similarity_kl(teacher, teacher, 0.1)) == pytest.approx(0.0, abs=1e-6)
    # a rotation and per-row rescaling leave every cosine unchanged
    same_cosines = (teacher @ rotation) * torch.linspace(0.5, 3.0, 40)[:, None]
    assert float(similarity_kl(teacher, same_cosines, 0.1)) == pytest.approx(0.0, abs=1e-5)
    assert float(similarity_kl(teacher, torch.randn(40, 12), 0.1)) > 0.05


def test_kl_matches_the_formula_with_self_pairs_excluded():
    gen = torch.Generator().manual_seed(4)
    teacher, student = torch.randn(6, 5, generator=gen), torch.randn(6, 3, generator=gen)
    tau = 0.5

    def row_probs(e: np.ndarray) -> np.ndarray:
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        logits = u @ u.T / tau
        np.fill_diagonal(logits, -np.inf)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    p, q = row_probs(teacher.double().numpy()), row_probs(student.double().numpy())
    off = ~np.eye(6, dtype=bool)
    expected = (p[off] * np.log(p[off] / q[off])).sum() / 6
    assert float(similarity_kl(teacher, student, tau)) == pytest.approx(expected, rel=1e-4)


def test_ss2d_terms_per_size_and_weights():
    teacher, student = torch.randn(30, 16), torch.randn(30, 16)
    terms = ss2d_losses(teacher, student, (4, 8, 16), TrainConfig(size_weights=(1.0, 0.0, 2.0)))
    assert set(terms) == {'kl@4', 'kl@8', 'kl@16', 'total'}
    assert float(terms['total']) == pytest.approx(float(terms['kl@4'] + 2 * terms['kl@16']))
    centred = teacher - teacher.mean(dim=0)     # the student's output is centred in the loss
    exact = ss2d_losses(centred, centred, (16,), TrainConfig())
    assert float(exact['kl@16']) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(HeadError, match='one weight per size'):
        ss2d_losses(teacher, student, (4, 8), TrainConfig(size_weights=(1.0,)))


def test_ss2d_tau_size_exponent_scales_the_student_temperature_per_size():
    teacher, student = torch.randn(30, 16), torch.randn(30, 16)
    cfg = TrainConfig(tau=0.1, tau_size_exponent=0.5)
    terms = ss2d_losses(teacher, student, (4, 16), cfg)
    log_p = similarity_log_probs(teacher, 0.1)
    centred = student - student.mean(dim=0)
    expected = kl_rows(log_p, similarity_log_probs(centred[:, :4], 0.1 * 2.0))   # sqrt(16 / 4)
    assert float(terms['kl@4']) == pytest.approx(float(expected), rel=1e-5)
    plain = ss2d_losses(teacher, student, (4, 16), TrainConfig(tau=0.1, tau_size_exponent=0.0))
    assert float(terms['kl@16']) == pytest.approx(float(plain['kl@16']), rel=1e-6)
    assert float(terms['kl@4']) != pytest.approx(float(plain['kl@4']), rel=1e-3)
    with pytest.raises(ConfigError, match='tau_size_exponent'):
        TrainConfig(tau_size_exponent=-0.5)


def test_ss2d_gradient_reaches_only_the_prefix_it_measures():
    teacher = torch.randn(20, 16)
    student = torch.randn(20, 32, requires_grad=True)
    ss2d_losses(teacher, student, (8,), TrainConfig())['total'].backward()
    assert student.grad[:, :8].abs().sum() > 0
    assert torch.count_nonzero(student.grad[:, 8:]) == 0


def test_gradients_flow_to_the_right_parameters():
    cfg = HeadConfig(latent_dim=8, prefix_sizes=(4, 8))
    ae, student = AESVCAutoencoder(12, cfg), SS2DStudent(12, cfg)
    x = torch.randn(32, 12)
    z, x_rec = ae(x)
    # the latent constraints alone train the encoder and never touch the decoder
    only_latent = TrainConfig(w_rec=0.0)
    aesvc_losses(x, z, x_rec, only_latent)['total'].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ae.encoder.parameters())
    assert all(p.grad is None or not p.grad.any() for p in ae.decoder.parameters())
    ae.zero_grad(set_to_none=True)
    z, x_rec = ae(x)
    aesvc_losses(x, z, x_rec, TrainConfig())['total'].backward()
    assert all(p.grad.abs().sum() > 0 for p in ae.parameters())
    # distillation trains the student only: the teacher latent is a fixed target
    ae.zero_grad(set_to_none=True)
    with torch.no_grad():
        teacher = ae.encoder(x)
    ss2d_losses(teacher, student(x), cfg.prefix_sizes, TrainConfig())['total'].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in ae.parameters())


def test_self_pairs_are_left_out_exactly_even_at_a_tiny_tau():
    gen = torch.Generator().manual_seed(5)
    teacher, student = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    log_p = similarity_log_probs(teacher, 1e-4)
    assert log_p.shape == (8, 7) and torch.isfinite(log_p).all()
    assert torch.allclose(log_p.exp().sum(dim=1), torch.ones(8))
    kl = similarity_kl(teacher, student, 1e-4)
    assert torch.isfinite(kl) and float(kl) > 0
