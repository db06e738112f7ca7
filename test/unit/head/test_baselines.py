"""Baselines: exact truncation and PCA (checked against numpy's SVD), and the per-size models."""

from __future__ import annotations

from head_samples import TINY_HEAD, tiny_raw, TINY_TRAIN
import numpy as np
import pytest

from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.baselines import (AesvcEncoder, fit_aesvc_per_size, fit_ssd, PCA, PerSize,
                                      Truncation)
from aesvc_vpr.head.training import fit_head


def test_truncation_is_the_raw_prefix():
    raw = tiny_raw(rows=6)
    method = Truncation(24)
    assert np.array_equal(method.project(raw), raw)
    prefix = method.prefix(raw, 5)
    assert np.allclose(prefix, raw[:, :5] / np.linalg.norm(raw[:, :5], axis=1, keepdims=True))
    with pytest.raises(HeadError, match=r'outside 1\.\.24'):
        method.check_prefix(25)
    with pytest.raises(HeadError, match=r'expects \(N, 24\)'):
        method.project(np.zeros((2, 23)))


def test_pca_matches_numpy_svd():
    raw = tiny_raw(rows=200).astype(np.float64)
    centred = raw - raw.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt.T                                   # scores, largest variance first
    scores = PCA.fit(raw).project(raw)
    assert scores.shape == (200, 24)
    # components are defined up to sign
    assert np.allclose(np.abs(scores), np.abs(reference), atol=1e-3)
    variances = scores.var(axis=0, ddof=1)
    assert np.allclose(variances, singular ** 2 / 199, rtol=1e-4)
    assert np.all(np.diff(variances) <= 0)


def test_whitened_pca_has_identity_covariance_on_its_training_data():
    raw = tiny_raw(rows=300)
    method = PCA.fit(raw, whiten=True, n_components=10)
    assert method.name == 'pca-whitened' and method.output_dim == 10
    scores = method.project(raw)
    assert np.allclose(np.cov(scores, rowvar=False), np.eye(10), atol=1e-3)
    assert np.allclose(scores.mean(axis=0), 0.0, atol=1e-3)


@pytest.fixture(scope='module')
def teacher():
    return fit_head(tiny_raw(), TINY_HEAD, TINY_TRAIN, progress=False)


def test_ssd_trains_one_student_per_size_with_the_heads_shape(teacher):
    raw = tiny_raw()
    ssd = fit_ssd(raw, teacher, (4, 8), TINY_HEAD, TINY_TRAIN, progress=False)
    assert isinstance(ssd, PerSize) and ssd.prefix_sizes == (4, 8) and ssd.output_dim == 8
    widths = {size: member.module.net[0].out_features for size, member in ssd.members.items()}
    hidden = teacher.student.net[0].out_features
    assert widths == {4: hidden, 8: hidden}
    four = ssd.prefix(raw[:5], 4)
    assert four.shape == (5, 4) and np.allclose(np.linalg.norm(four, axis=1), 1.0, atol=1e-6)
    # size 4 comes from its own, 4-wide student, not from a prefix of the size-8 one
    assert ssd.members[4].output_dim == 4 and ssd.members[4] is not ssd.members[8]
    assert ssd.project(raw[:5]).shape == (5, 8)
    with pytest.raises(HeadError, match=r'no model for size 6; sizes \(4, 8\)'):
        ssd.check_prefix(6)


def test_aesvc_encoder_and_per_size_autoencoders(teacher):
    raw = tiny_raw()
    encoder = AesvcEncoder(teacher.standardisation, teacher.autoencoder)
    assert encoder.project(raw).shape == (160, 16)
    per_size = fit_aesvc_per_size(raw, (4, 8), TINY_HEAD, TINY_TRAIN, progress=False)
    assert {s: m.output_dim for s, m in per_size.members.items()} == {4: 4, 8: 8}
    assert per_size.prefix(raw[:3], 8).shape == (3, 8)
