"""Geometric verification on real street photos: overlapping crops pass, other places fail.

When written, ORB gave 200-430 inliers on the overlapping crops and at most 11 on any pair of
different database images; SIFT 196-334 and at most 26 (min_inliers defaults to 30).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from aesvc_vpr.config import LoopClosureConfig
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.loop.geometric import GeometricVerifier, make_thumbnail


@pytest.mark.parametrize('method', ['orb', 'sift'])
def test_overlapping_crops_pass_other_places_fail(shared_data: Path, method: str) -> None:
    paths = sorted((shared_data / 'sf_toy_unlabelled' / 'database').glob('db*.jpg'))[:8]
    if len(paths) < 8:
        pytest.skip(f'sf_toy_unlabelled/database has {len(paths)} images, 8 needed')
    min_inliers = LoopClosureConfig().min_inliers
    verifier = GeometricVerifier(method)
    images = [read_rgb(str(p)) for p in paths]
    for image in images[:4]:
        w = image.shape[1]
        left, right = image[:, :int(0.8 * w)], image[:, int(0.2 * w):]   # 60 % overlap
        inliers = verifier.inliers(verifier.features(make_thumbnail(left, 320)),
                                   verifier.features(make_thumbnail(right, 320)))
        assert inliers >= 3 * min_inliers
    features = [verifier.features(make_thumbnail(image, 320)) for image in images]
    worst = max(verifier.inliers(a, b) for a, b in combinations(features, 2))
    assert worst < min_inliers
