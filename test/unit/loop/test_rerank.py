"""Geometric re-ranking in localisation mode: the true revisit of a rendered drive comes first."""

from __future__ import annotations

import cv2
import numpy as np

from aesvc_vpr.data.synthetic_route import town_loop_route
from aesvc_vpr.loop.rerank import GeometricReranker
from aesvc_vpr.retrieval.localizer import Localization, Match


def test_rerank_puts_the_geometrically_consistent_place_first(tmp_path):
    route = town_loop_route()
    d = np.linalg.norm(route.poses[:, None, :2] - route.poses[None, :, :2], axis=2)
    query = len(d) - 20
    true = int(np.argmin(d[query, :query - 30]))          # the earlier pass at this place
    far = [j for j in range(0, query - 30, 7) if d[query, j] > 50][:3]
    paths = []
    for j in range(len(route.images)):
        path = tmp_path / f'{j}.png'
        if j in far or j == true:
            cv2.imwrite(str(path), cv2.cvtColor(route.images[j], cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    order = [far[0], far[1], true, far[2]]
    missing = 5 if 5 not in order else 6                  # a map image that is not on disk
    loc = Localization(0, [Match(j, 0.9 - 0.1 * r, 0.0, 0.0, 0.0)
                           for r, j in enumerate(order + [missing])], 0.0, 0.001)
    reranker = GeometricReranker(paths, 'orb')
    out = reranker.rerank(route.images[query], loc)
    assert out.matches[0].index == true
    assert reranker.last_inliers[0] >= 15 > max(reranker.last_inliers[1:])
    assert out.matches[-1].index == missing and reranker.last_inliers[-1] == -1
    assert reranker.unreadable == 1
    assert out.search_s > loc.search_s
    assert sorted(m.index for m in out.matches) == sorted(m.index for m in loc.matches)
