"""The real VPR-Bench Corridor set reads with positives equal to its ground truth lists."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.data.datasets import load_dataset
from aesvc_vpr.index.ranking import positives_within


def test_corridor_positives_are_its_ground_truth(shared_data) -> None:
    root = shared_data / 'vprbench_corridor'
    if not (root / 'ground_truth_new.npy').is_file():
        pytest.skip(f'{root / "ground_truth_new.npy"} not found')
    data = load_dataset(root)
    assert (len(data.database), len(data.queries)) == (111, 111)
    truth = np.load(root / 'ground_truth_new.npy', allow_pickle=True)
    positives = positives_within(data.database.utm, data.queries.utm, data.radius_m)
    assert [sorted(p.tolist()) for p in positives] == [sorted(row[1]) for row in truth]
