"""Training: split, determinism, early stopping, the head file it writes, and what it achieves.

The quality tests train once on a reduced synthetic set (128-d, 2,000 database rows) and check
the outcomes PAPER.md predicts, with margins a broken implementation would not reach.
"""

from __future__ import annotations

import dataclasses
import hashlib

from head_samples import (BACKBONE, SMALL_HEAD, small_set, SMALL_TRAIN, TINY_HEAD, tiny_raw,
                          TINY_TRAIN)
import numpy as np
import pytest
import torch

from aesvc_vpr.config import TrainConfig
from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.baselines import AesvcEncoder, PCA, StudentProjection, Truncation
from aesvc_vpr.head.fitting import fit, validation_loss
from aesvc_vpr.head.headfile import load_head, Standardisation
from aesvc_vpr.head.networks import AESVCAutoencoder
from aesvc_vpr.head.quality import cosine_stats, prefix_recall
from aesvc_vpr.head.training import (fit_autoencoder, fit_head, new_student, split_indices,
                                     train_head)
from aesvc_vpr.head.whitening import start_teacher, Whitening
from aesvc_vpr.index.ranking import positives_within


def test_split_is_seeded_disjoint_and_complete():
    train, val = split_indices(100, TrainConfig(val_fraction=0.2, seed=1))
    assert len(val) == 20 and len(train) == 80
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again, _ = split_indices(100, TrainConfig(val_fraction=0.2, seed=1))
    other, _ = split_indices(100, TrainConfig(val_fraction=0.2, seed=2))
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    with pytest.raises(HeadError, match='at least'):
        split_indices(3, TrainConfig())


def test_same_seed_same_weights_other_seed_other_weights():
    raw = tiny_raw()
    first = fit_head(raw, TINY_HEAD, TINY_TRAIN, progress=False)
    second = fit_head(raw, TINY_HEAD, TINY_TRAIN, progress=False)
    third = fit_head(raw, TINY_HEAD, TrainConfig(epochs=3, batch_size=32, seed=1),
                     progress=False)
    for a, b, c in zip(first.student.state_dict().values(), second.student.state_dict().values(),
                       third.student.state_dict().values()):
        assert torch.equal(a, b)
    pairs = zip(first.student.state_dict().values(), third.student.state_dict().values())
    assert not all(torch.equal(a, c) for a, c in pairs)
    assert first.report == {**second.report, 'seconds': first.report['seconds']}


def _pull_to_plus_one(epochs: int, judge) -> tuple[torch.nn.Linear, object]:
    """Train w (starting at 0) towards +1 under a given judge; returns the module and result."""
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    ones = torch.ones(8, 1)

    def loss_fn(mod: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {'total': (mod(x) - 1.0).pow(2).mean()}

    cfg = TrainConfig(batch_size=4, patience=3)
    result = fit(module, loss_fn, (ones,), [{'params': module.parameters(), 'lr': 0.05}], cfg,
                 epochs, judge, 'test', progress=False)
    return module, result


def test_the_judge_keeps_the_start_when_training_only_hurts():
    module, result = _pull_to_plus_one(
        50, lambda m: {'score': -(float(m.weight.detach()) + 1) ** 2})
    assert result.epoch == 0 and result.epochs_run == 3       # patience 3, nothing better
    assert float(module.weight.detach()) == 0.0          # the start's weights restored
    assert result.best == result.start == {'score': -1.0}


def test_the_judge_picks_the_best_epoch_and_guards_hold():
    module, result = _pull_to_plus_one(10, lambda m: {'score': float(m.weight.detach())})
    assert result.epoch == 10 and 0.5 < float(module.weight.detach()) < 1.0
    # the score rises every epoch, but a guarded term falls: no epoch is eligible
    module, result = _pull_to_plus_one(
        10, lambda m: {'score': float(m.weight.detach()), 'guard.16': -float(m.weight.detach())})
    assert result.epoch == 0 and float(module.weight.detach()) == 0.0


def test_without_a_judge_it_trains_exactly_the_epochs_asked():
    module, result = _pull_to_plus_one(4, None)
    assert result.epoch == result.epochs_run == 4 and float(module.weight.detach()) > 0


def test_whitening_start_reconstructs_exactly_with_identity_covariance():
    raw = tiny_raw(rows=400)
    x = torch.from_numpy(Standardisation.fit(raw).apply(raw))
    head_cfg = dataclasses.replace(TINY_HEAD, latent_dim=24, prefix_sizes=(8, 24))
    autoencoder = AESVCAutoencoder(24, head_cfg)
    start_teacher(autoencoder, Whitening.fit(x.numpy(), 24, folds=0))
    with torch.no_grad():
        z, reconstruction = autoencoder(x)
    assert torch.allclose(reconstruction, x, atol=1e-4)          # the whole space: exact
    covariance = np.cov(z.numpy(), rowvar=False)
    assert np.allclose(covariance, np.eye(24), atol=1e-4)
    assert np.allclose(z.numpy().mean(axis=0), 0.0, atol=1e-4)
    # held-out variances only whiten weak axes less: still exact reconstruction
    start_teacher(autoencoder, Whitening.fit(x.numpy(), 24, folds=5))
    with torch.no_grad():
        z, reconstruction = autoencoder(x)
    assert torch.allclose(reconstruction, x, atol=1e-4)
    assert np.all(np.diag(np.cov(z.numpy(), rowvar=False)) <= 1 + 1e-4)


def test_the_student_starts_as_the_teachers_ordered_axes():
    raw = tiny_raw()
    x = torch.from_numpy(Standardisation.fit(raw).apply(raw))
    exact = dataclasses.replace(TINY_TRAIN, whiten_folds=0)     # training variances only
    autoencoder, _, _ = fit_autoencoder(x, np.arange(len(x)), None, TINY_HEAD, exact,
                                        epochs=0, progress=False)
    student = new_student(autoencoder, TINY_HEAD, TINY_TRAIN)
    with torch.no_grad():
        assert torch.equal(student(x), autoencoder.encoder(x))
        out = student(x).numpy()
    # nested from the start: the prefixes are whitened principal axes, largest first
    assert np.allclose(np.cov(out, rowvar=False), np.eye(16), atol=1e-3)
    axes = np.linalg.eigh(np.cov(x.numpy(), rowvar=False))[1][:, ::-1][:, :16]
    cosines = np.abs(np.sum(autoencoder.encoder.shortcut.detach().numpy().T * axes, axis=0)
                     / np.linalg.norm(autoencoder.encoder.shortcut.detach().numpy(), axis=1))
    assert np.allclose(cosines, 1.0, atol=1e-4)


def test_training_never_returns_a_head_below_its_start(trained_small):
    data, head, _ = trained_small
    assert head.report['select.chosen'] >= head.report['select.start']
    assert head.report['aesvc.total'] <= head.report['aesvc.val_start']


def test_the_head_output_is_centred_on_its_rows(trained_small):
    data, head, _ = trained_small
    out = StudentProjection(head.standardisation, head.student, 'ss2d').project(data.database)
    for size in SMALL_HEAD.prefix_sizes:
        assert abs(cosine_stats(out[:, :size])[0]) < 0.02, size


def test_bad_training_data_is_rejected_before_training():
    with pytest.raises(HeadError, match='finite'):
        fit_head(np.full((50, 24), np.nan, np.float32), TINY_HEAD, TINY_TRAIN, progress=False)
    with pytest.raises(HeadError, match=r'\(N, D\)'):
        fit_head(np.zeros(24, np.float32), TINY_HEAD, TINY_TRAIN, progress=False)
    with pytest.raises(HeadError, match='size_weights'):
        fit_head(tiny_raw(), TINY_HEAD, TrainConfig(size_weights=(1.0,)), progress=False)


def test_train_head_writes_a_complete_head_file(tmp_path):
    raw = tiny_raw()
    path = train_head(raw, BACKBONE, TINY_HEAD, TINY_TRAIN, tmp_path / 'sub' / 'h.safetensors',
                      progress=False)
    head = load_head(path)
    meta = head.meta
    assert (meta.backbone_name, meta.input_dim) == (BACKBONE, 24)
    assert meta.head.prefix_sizes == (4, 8, 16) and meta.head.hidden_dim == 20
    assert meta.train == TINY_TRAIN
    assert meta.training_data.count == 160
    assert meta.training_data.sha256 == hashlib.sha256(raw.tobytes()).hexdigest()
    assert np.allclose(meta.standardisation.mean, raw.mean(axis=0), atol=1e-4)
    assert np.ptp(meta.standardisation.std) == 0, 'one scale for every dimension'

    assert {'aesvc.epochs', 'ss2d.epochs', 'select.start', 'select.chosen'} <= set(meta.report)
    assert meta.head.shortcut == meta.head.decoder_shortcut == 1
    assert meta.created_utc.endswith('+00:00') and meta.package_version


@pytest.fixture(scope='module')
def trained_small():
    data = small_set()
    head = fit_head(data.database, SMALL_HEAD, SMALL_TRAIN, progress=False, utm=data.db_utm)
    positives = positives_within(data.db_utm, data.query_utm, 25.0)
    return data, head, positives


def test_aesvc_centres_and_whitens_the_latent(trained_small):
    data, head, _ = trained_small
    raw_mean, _ = cosine_stats(data.database)
    assert raw_mean > 0.5                       # the generator has the pathology to fix
    z = AesvcEncoder(head.standardisation, head.autoencoder).project(data.queries)
    mean, var = cosine_stats(z)                 # held-out rows: queries were never trained on
    d = SMALL_HEAD.latent_dim
    assert abs(mean) < 0.05
    assert 0.5 / d < var < 2.0 / d


def test_aesvc_beats_raw_and_ss2d_beats_truncation_and_pca(trained_small):
    data, head, positives = trained_small
    dim = data.database.shape[1]

    def r1(method, size):
        return prefix_recall(method, size, data.database, data.queries, positives, (1,))[1]

    raw, pca = Truncation(dim), PCA.fit(data.database)
    aesvc = AesvcEncoder(head.standardisation, head.autoencoder)
    ss2d = StudentProjection(head.standardisation, head.student, 'ss2d')
    assert r1(aesvc, SMALL_HEAD.latent_dim) >= r1(raw, dim) + 0.1
    for size in (16, 32):
        baseline = max(r1(raw, size), r1(pca, size))
        assert r1(ss2d, size) >= baseline + 0.08, size


def test_validation_never_uses_a_batch_shorter_than_the_training_batch():
    seen: list[int] = []

    def loss(module, x):
        seen.append(len(x))
        return {'total': x.var(dim=0, unbiased=True).mean()}

    rows = torch.randn(2 * 8 + 2, 3)        # two full batches and a 2-row remainder
    terms = validation_loss(torch.nn.Identity(), loss, (rows,), 8)
    assert seen and min(seen) >= 8 and sum(seen) == len(rows)
    expected = sum(len(c) * float(c.var(dim=0, unbiased=True).mean())
                   for c in torch.tensor_split(rows, len(seen))) / len(rows)
    assert terms['total'] == pytest.approx(expected)
