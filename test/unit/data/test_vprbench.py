"""VPR-Bench folders: the ground truth lists become positions whose positives are those lists."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aesvc_vpr.data.datasets import load_dataset
from aesvc_vpr.errors import DatasetError
from aesvc_vpr.index.ranking import positives_within


def write_vprbench(root, count: int, truth: list[list[int]]) -> None:
    for split in ('ref', 'query'):
        (root / split).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / split / f'{i:07d}.jpg'), np.full((24, 32, 3), i, np.uint8))
    rows = np.empty((len(truth), 2), object)
    for q, band in enumerate(truth):
        rows[q] = [q, band]
    np.save(root / 'ground_truth_new.npy', rows, allow_pickle=True)


def test_band_ground_truth_gives_exactly_those_positives(tmp_path) -> None:
    truth = [[0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5]]
    write_vprbench(tmp_path, 6, truth)
    data = load_dataset(tmp_path)
    assert (len(data.database), len(data.queries)) == (6, 6)
    assert data.database.paths[0].endswith('ref/0000000.jpg')
    positives = positives_within(data.database.utm, data.queries.utm, data.radius_m)
    assert [sorted(p.tolist()) for p in positives] == truth


def test_ground_truth_that_is_no_band_is_refused(tmp_path) -> None:
    write_vprbench(tmp_path, 4, [[0, 1], [0, 1, 2], [1, 3], [2, 3]])
    with pytest.raises(DatasetError, match=r'query 2 lists frames \[1, 3\], not a \+/-1 band'):
        load_dataset(tmp_path)
