"""Geometric re-ranking of a localisation's top-k: most essential-matrix inliers first.

The loop-closure check (``geometric.py``) offered to localisation mode: each candidate's map
image (read from the path the map stores, shrunk to a thumbnail, its features cached in a
bounded LRU) is matched against the query frame, and the candidates are re-ordered by RANSAC
inliers (ties keep the retrieval order). A candidate whose map image cannot be read gets -1
inliers and sinks to the end; it is counted, never raised.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
import logging
import time
from typing import Sequence

import numpy as np

from aesvc_vpr.errors import ImageError
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.loop.geometric import Features, GeometricVerifier, make_thumbnail
from aesvc_vpr.retrieval.localizer import Localization

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 320       # long side of the images compared, pixels
CACHE_SIZE = 2000          # map images whose features are kept


class GeometricReranker:
    """Re-orders a frame's candidates by inliers with the query image."""

    def __init__(self, map_paths: Sequence[str], method: str = 'orb',
                 side: int = THUMBNAIL_SIDE, cache_size: int = CACHE_SIZE) -> None:
        """Prepare the verifier; map images are read on first use.

        Raises:
            LoopError: unknown method.
        """
        self.verifier = GeometricVerifier(method)
        self.method = method
        self._paths = list(map_paths)
        self._side = side
        self._cache: OrderedDict[int, Features | None] = OrderedDict()
        self._cache_size = cache_size
        self.unreadable = 0
        self.last_s = 0.0
        self.last_inliers: list[int] = []

    def rerank(self, image_rgb: np.ndarray, loc: Localization) -> Localization:
        """Return ``loc`` with its matches re-ordered by inliers (most first).

        Args:
            image_rgb: (H, W, 3) uint8 RGB query frame.
            loc: its candidates, best first.
        """
        start = time.perf_counter()
        query = self.verifier.features(make_thumbnail(image_rgb, self._side))
        inliers = []
        for match in loc.matches:
            features = self._map_features(match.index)
            inliers.append(-1 if features is None else self.verifier.inliers(query, features))
        order = sorted(range(len(inliers)), key=lambda i: (-inliers[i], i))
        self.last_inliers = [inliers[i] for i in order]
        self.last_s = time.perf_counter() - start
        return replace(loc, matches=[loc.matches[i] for i in order],
                       search_s=loc.search_s + self.last_s)

    def _map_features(self, index: int) -> Features | None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        features = None
        path = self._paths[index] if 0 <= index < len(self._paths) else ''
        try:
            if path:
                features = self.verifier.features(make_thumbnail(read_rgb(path), self._side))
        except ImageError as err:
            self.unreadable += 1
            log.warning('map image %d (%s) unreadable for the geometric check: %s', index,
                        path, err)
        if features is None and not path:
            self.unreadable += 1
        self._cache[index] = features
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return features
