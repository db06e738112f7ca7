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
from aesvc_vpr.head.headfile import load_head, Standardisation
from aesvc_vpr.head.quality import cosine_stats, prefix_recall
from aesvc_vpr.head.training import (fit, fit_head, new_student, recentre, sample_rows,
                                     split_indices, train_head, validation_loss)
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


def test_early_stopping_keeps_the_best_epoch():
    # training pulls the parameter to +1 while validation wants -1: epoch 1 is the best
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    ones = torch.ones(8, 1)

    def loss_fn(mod: torch.nn.Module, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {'total': (mod(ones[:len(target)]) - target).pow(2).mean()}

    cfg = TrainConfig(epochs=50, batch_size=4, lr=0.05, patience=3)
    terms, epochs = fit(module, loss_fn, (ones,), (-ones,), cfg, 'test', progress=False)
    assert epochs == 1 + 3
    first_epoch_weight = float(module.weight.detach())
    assert 0 < first_epoch_weight < 0.2        # after one epoch (2 steps of 0.05), not four
    assert terms['total'] == pytest.approx((first_epoch_weight + 1) ** 2, rel=1e-5)


def test_recentre_changes_only_the_latent_mean():
    raw = torch.from_numpy(tiny_raw()) / 5
    head = fit_head(tiny_raw(), TINY_HEAD, TINY_TRAIN, progress=False)
    ae = head.autoencoder
    with torch.no_grad():
        ae.encoder[-1].bias.add_(3.0)            # shift the latent away from zero mean
        z_before, rec_before = ae(raw)
        recentre(ae, raw)
        z_after, rec_after = ae(raw)
    assert float(z_before.mean(dim=0).abs().max()) > 2.0
    assert float(z_after.mean(dim=0).abs().max()) < 1e-5
    assert torch.allclose(z_after - z_after.mean(0), z_before - z_before.mean(0), atol=1e-5)
    assert torch.allclose(rec_after, rec_before, atol=1e-4)


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
    assert {'aesvc.rec', 'aesvc.cov', 'aesvc.var', 'aesvc.mean', 'ss2d.kl@4',
            'ss2d.total'} <= set(meta.report)
    assert meta.created_utc.endswith('+00:00') and meta.package_version


def test_shortcut_head_round_trips_and_starts_standardised(tmp_path):
    raw = tiny_raw()
    head_cfg = dataclasses.replace(TINY_HEAD, shortcut=1)
    train_cfg = dataclasses.replace(TINY_TRAIN, tau_size_exponent=0.5)
    x = torch.from_numpy(Standardisation.fit(raw).apply(raw))
    start = new_student(x, head_cfg, train_cfg)
    with torch.no_grad():
        y = start(x)
    assert torch.allclose(y.mean(dim=0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(y.std(dim=0), torch.ones(16), atol=1e-4)
    path = train_head(raw, BACKBONE, head_cfg, train_cfg, tmp_path / 'h.safetensors',
                      progress=False)
    head = load_head(path)
    assert head.meta.head.shortcut == 1 and head.meta.train.tau_size_exponent == 0.5
    assert head.meta.head.hidden_dim == 20
    assert head.student.net.shortcut.shape == (16, 24)
    trained = fit_head(raw, head_cfg, train_cfg, progress=False)
    with torch.no_grad():
        assert torch.equal(head.student(x), trained.student(x))


@pytest.fixture(scope='module')
def trained_small():
    data = small_set()
    head = fit_head(data.database, SMALL_HEAD, SMALL_TRAIN, progress=False)
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


def test_statistics_for_the_output_initialisation_are_a_random_sample():
    x = torch.arange(10000, dtype=torch.float32)[:, None]
    sample = sample_rows(x, 100)
    assert len(sample) == 100 and float(sample.max()) > 5000, 'not just the first rows'
    assert torch.equal(sample, sample_rows(x, 100)), 'seeded'
    assert torch.equal(sample_rows(x[:50], 100), x[:50])
