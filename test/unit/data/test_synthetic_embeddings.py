"""The synthetic embedding generator: seeded, shaped as documented, with the pathology built in."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.data.synthetic_embeddings import (generate, ordered_database_blocks,
                                                 ordered_queries, OrderedConfig, SyntheticConfig)
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.head.quality import cosine_stats
from aesvc_vpr.index.ranking import positives_within

CFG = SyntheticConfig(dim=64, places=50, db_per_place=3, queries_per_place=2, place_dim=16,
                      nuisance_dim=3)


def test_shapes_ids_and_seed():
    data = generate(CFG)
    assert data.database.shape == (150, 64) and data.queries.shape == (100, 64)
    assert data.database.dtype == np.float32
    assert np.array_equal(np.bincount(data.db_place), np.full(50, 3))
    assert np.array_equal(np.bincount(data.query_place), np.full(50, 2))
    assert np.array_equal(generate(CFG).database, data.database)
    other = generate(SyntheticConfig(**{**CFG.__dict__, 'seed': 1}))
    assert not np.allclose(other.database, data.database)


def test_every_query_has_its_place_within_25_m():
    data = generate(CFG)
    positives = positives_within(data.db_utm, data.query_utm, 25.0)
    for place, found in zip(data.query_place, positives):
        assert set(np.flatnonzero(data.db_place == place)) <= set(found.tolist())
    # consecutive places are spacing_m apart, so most positives are the query's own place
    assert np.mean([len(p) for p in positives]) < 2 * CFG.db_per_place


def test_raw_embeddings_have_the_pathology():
    data = generate(CFG)
    mean, _ = cosine_stats(data.database)
    assert mean > 0.5                                   # a large shared mean direction
    centred = data.database - data.database.mean(axis=0)
    variances = np.linalg.eigvalsh(np.cov(centred, rowvar=False))[::-1]
    # the top directions are the few nuisance ones, far stronger than any place direction
    assert variances[0] > 4 * variances[CFG.nuisance_dim]
    # the same place is more similar than different places, once the mean is removed
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    sims = unit @ unit.T
    same = data.db_place[:, None] == data.db_place[None, :]
    np.fill_diagonal(same, False)
    assert sims[same].mean() > sims[~same].mean() + 0.1


def test_invalid_config():
    with pytest.raises(DatasetError, match='place_dim'):
        SyntheticConfig(dim=16, place_dim=16)


def test_ordered_blocks_are_seeded_and_queries_are_held_out():
    cfg = OrderedConfig(dim=32, block_places=50)
    blocks = list(ordered_database_blocks(cfg, 620))
    assert [len(b) for b in blocks] == [250, 250, 120]
    again = np.concatenate(list(ordered_database_blocks(cfg, 620)))
    database = np.concatenate(blocks)
    np.testing.assert_array_equal(database, again)
    # leading coordinates carry more variance (an ordered embedding)
    spread = database.std(axis=0)
    assert spread[:4].mean() > 2 * spread[-4:].mean()
    queries, places = ordered_queries(cfg, 620, 40)
    assert queries.shape == (40, 32) and places.max() < 124
    unit = database / np.linalg.norm(database, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarity = q @ unit.T
    assert similarity.max() < 0.9999                   # no query is a database row
    # a query's nearest row is mostly one of its own place's 5 views
    assert np.mean(similarity.argmax(axis=1) // 5 == places) > 0.8
