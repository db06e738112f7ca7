"""The real Pittsburgh30k-test ground truth: both file forms agree and the positives are sound."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.data.datasets import load_dataset, read_dbstruct
from aesvc_vpr.index.ranking import positives_within

SPEC = 'pitts30k_test_spec'
MAT = 'pitts30k_test.DERIVED_from_patchnetvlad.mat'


@pytest.fixture(scope='module')
def spec(shared_data):
    folder = shared_data / SPEC
    if not (folder / MAT).is_file():
        pytest.skip(f'{folder / MAT} not found')
    return folder


def test_mat_and_npz_give_the_same_sets(spec):
    # the .mat names are relative to Pittsburgh250k/, the .txt names include that folder
    mat = read_dbstruct(spec / MAT, image_root=spec / 'Pittsburgh250k')
    npz = load_dataset(spec / 'pitts30k_test.npz')
    assert (len(mat.database), len(mat.queries)) == (10000, 6816)
    assert mat.database.paths == npz.database.paths
    assert mat.queries.paths == npz.queries.paths
    np.testing.assert_array_equal(mat.database.utm, npz.database.utm)
    np.testing.assert_array_equal(mat.queries.utm, npz.queries.utm)
    assert mat.database.utm_zone == npz.database.utm_zone == '17T'
    assert mat.radius_m == npz.radius_m == 25.0


def test_every_query_has_positives_within_25m(spec):
    data = load_dataset(spec / MAT)
    positives = positives_within(data.database.utm, data.queries.utm, data.radius_m)
    counts = np.array([len(p) for p in positives])
    assert len(counts) == 6816
    assert counts.min() >= 1
    assert np.median(counts) == 120
    # spot-check the KD-tree against direct distances for a few queries
    for q in (0, 1234, 6815):
        dist = np.linalg.norm(data.database.utm - data.queries.utm[q], axis=1)
        np.testing.assert_array_equal(positives[q], np.flatnonzero(dist <= 25.0))
