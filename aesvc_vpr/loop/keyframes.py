"""The loop-closure detector's own map: keyframes in time order, searched by embedding prefix.

Keyframes are only ever appended, in increasing time, so "older than the exclusion window" is a
leading range of ids, searched exactly by the package's flat ``PrefixIndex`` over its first rows.
A numpy product over the slice is as simple and about as fast (medians within 2x, below 1 ms at
10k keyframes), but its multi-threaded BLAS had a far longer tail on a busy CPU
(benchmarks/bench_loop_search.py).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from aesvc_vpr.config import LoopClosureConfig
from aesvc_vpr.errors import LoopError
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.retrieval.mapdb import KEYFRAMES, MapDatabase

if TYPE_CHECKING:
    from aesvc_vpr.head.projector import Projector

log = logging.getLogger(__name__)


class _Rows:
    """A 2-D array that grows by doubling, so appending one row is amortised O(row)."""

    def __init__(self, width: int, dtype: type) -> None:
        self._data = np.empty((16, width), dtype)
        self.count = 0

    def append(self, row: np.ndarray) -> None:
        if self.count == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self.count] = row
        self.count += 1

    @property
    def view(self) -> np.ndarray:
        return self._data[:self.count]

    @property
    def width(self) -> int:
        return self._data.shape[1]


class KeyframeStore:
    """Keyframe stamps, odometry poses, travelled path and embeddings, in insertion order.

    The first ``n_prior`` keyframes come from an earlier session (a loaded map) and are always
    searchable; later ones must lie outside the exclusion window of the query.
    """

    def __init__(self, prefix_dim: int | None = None) -> None:
        self.prefix_dim = prefix_dim
        self.n_prior = 0
        self._stamps: _Rows | None = None     # (N, 1) int64 stamp_ns (float64 would round them)
        self._meta: _Rows | None = None       # (N, 4) float64: x_m, y_m, yaw_rad, path_m
        self._raw: _Rows | None = None        # (N, D) float16 backbone output, for the map file
        self._full: _Rows | None = None       # (N, E) float32 full-size projected embeddings
        self._index: PrefixIndex | None = None   # unit prefix rows: exact cosine search

    @property
    def count(self) -> int:
        """Number of keyframes."""
        return self._meta.count if self._meta else 0

    @property
    def stamps_ns(self) -> np.ndarray:
        """(N,) int64 keyframe stamps."""
        return self._stamps.view[:, 0] if self._stamps else np.empty(0, np.int64)

    @property
    def poses(self) -> np.ndarray:
        """(N, 3) float64 odometry x_m, y_m, yaw_rad; NaN rows where odometry was missing."""
        return self._meta.view[:, :3] if self._meta else np.empty((0, 3))

    @property
    def path_m(self) -> np.ndarray:
        """(N,) float64 travelled path at each keyframe, metres."""
        return self._meta.view[:, 3] if self._meta else np.empty(0)

    @property
    def raw(self) -> np.ndarray:
        """(N, D) float16 raw backbone embeddings."""
        return self._raw.view if self._raw else np.empty((0, 0), np.float16)

    @property
    def embeddings(self) -> np.ndarray:
        """(N, E) float32 full-size projected embeddings."""
        return self._full.view if self._full else np.empty((0, 0), np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes held by the (capacity of the) arrays."""
        rows = (self._stamps, self._meta, self._raw, self._full)
        index = self._index.nbytes if self._index else 0
        return index + sum(r._data.nbytes for r in rows if r)

    def unit(self, embedding: np.ndarray) -> np.ndarray:
        """Turn one full-size embedding into its search form: (prefix,) float32 unit vector."""
        if self._full is not None and embedding.shape[-1] != self._full.width:
            raise LoopError(f"embedding size {embedding.shape[-1]} differs from the map's "
                            f'{self._full.width}: was the map built with another backbone or '
                            'head?')
        dim = self.prefix_dim or embedding.shape[-1]
        if dim > embedding.shape[-1]:
            raise LoopError(f'prefix_dim {dim} exceeds the embedding size '
                            f'{embedding.shape[-1]}; use a smaller search.prefix_dim')
        return l2_prefix(embedding.reshape(1, -1), dim)[0]

    def append(self, stamp_ns: int, embedding: np.ndarray, raw: np.ndarray,
               pose: tuple[float, float, float] | None, path_m: float) -> int:
        """Add one keyframe; returns its index.

        Args:
            stamp_ns: keyframe time, int nanoseconds (newer than every session keyframe).
            embedding: (E,) full-size projected embedding.
            raw: (D,) raw backbone embedding (the embedding itself when there is no head).
            pose: odometry (x_m, y_m, yaw_rad), or None when missing.
            path_m: travelled path at this keyframe, metres.
        """
        unit = self.unit(embedding)        # checks the size before anything is stored
        if self._meta is None:
            self._stamps = _Rows(1, np.int64)
            self._meta = _Rows(4, np.float64)
            self._raw = _Rows(raw.shape[-1], np.float16)
            self._full = _Rows(embedding.shape[-1], np.float32)
            self._index = PrefixIndex(np.empty((0, len(unit)), np.float32), len(unit))
        if raw.shape[-1] != self._raw.width:
            raise LoopError(f"raw embedding size {raw.shape[-1]} differs from the map's "
                            f'{self._raw.width}: was the map built with another backbone?')
        x, y, yaw = pose if pose is not None else (np.nan, np.nan, np.nan)
        self._stamps.append(np.array([stamp_ns], np.int64))
        self._meta.append(np.array([x, y, yaw, path_m], np.float64))
        self._raw.append(raw)
        self._full.append(embedding)
        self._index.add(unit[None])
        return self.count - 1

    def eligible(self, stamp_ns: int, path_m: float, exclusion_s: float,
                 exclusion_m: float) -> int:
        """How many leading keyframes lie outside the exclusion window of a query.

        Session keyframes have increasing stamps and non-decreasing path, so the eligible ones are
        a prefix found by binary search. Earlier-session keyframes are always eligible.
        """
        session = slice(self.n_prior, self.count)
        newest_ns = stamp_ns - int(round(exclusion_s * 1e9))
        limit = np.searchsorted(self.stamps_ns[session], newest_ns, 'right')
        if exclusion_m > 0:
            by_path = np.searchsorted(self.path_m[session], path_m - exclusion_m, 'right')
            limit = min(limit, by_path)
        return self.n_prior + int(limit)

    def search(self, query_unit: np.ndarray, n_eligible: int, k: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        """Top-k cosine matches among the first ``n_eligible`` keyframes.

        Args:
            query_unit: (prefix,) float32 unit vector from :meth:`unit`.
            n_eligible: search keyframes [0, n_eligible).
            k: number of matches wanted.

        Returns:
            scores (k',) float32 descending and indices (k',) int64, k' = min(k, n_eligible).
        """
        if n_eligible <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        scores, indices = self._index.search(query_unit[None], k, limit=n_eligible)
        return scores[0], indices[0]

    def set_prefix_dim(self, prefix_dim: int | None) -> None:
        """Re-derive the search matrix for another prefix size from the stored embeddings."""
        if self._full is not None and prefix_dim and prefix_dim > self._full.width:
            raise LoopError(f'prefix_dim {prefix_dim} exceeds the embedding size '
                            f'{self._full.width}; use a smaller search.prefix_dim')
        self.prefix_dim = prefix_dim
        if self._full is None:
            return
        self._index = PrefixIndex(self._full.view, prefix_dim or self._full.width)

    def start_session(self) -> None:
        """Make every keyframe so far an earlier session's: always searchable from now on."""
        self.n_prior = self.count

    def load_prior(self, mapdb: MapDatabase) -> None:
        """Start from an earlier session's keyframe store; its keyframes are always searchable.

        Args:
            mapdb: a keyframe store written by :meth:`save` (load it with ``kind='keyframes'``).

        Raises:
            LoopError: a map of another kind (a build-map localisation map), or keyframes were
                already added in this session.
        """
        if mapdb.kind != KEYFRAMES:
            raise LoopError(f'{mapdb.root} is a {mapdb.kind} map, not a loop-closure keyframe '
                            'store; its UTM places are no odometry poses. Give the loop-closure '
                            'mode a map_path of its own')
        if self.count:
            raise LoopError(f'{mapdb.root}: a map can only be loaded into an empty keyframe '
                            f'store, this one has {self.count} keyframes')
        for i in range(mapdb.count):
            pose = (*mapdb.utm[i], mapdb.yaw[i])
            self.append(int(mapdb.stamps_ns[i]), mapdb.embeddings[i], mapdb.raw[i],
                        pose if np.all(np.isfinite(mapdb.utm[i])) else None, 0.0)
        self.n_prior = self.count
        log.info('loaded %d keyframes from %s', self.count, mapdb.root)

    def save(self, root: str | os.PathLike, *, backbone_name: str, backbone_fingerprint: str,
             projector: Projector | None = None, frame_id: str = '') -> MapDatabase | None:
        """Write every keyframe (earlier sessions' included) as a map directory.

        Positions go where a map keeps UTM easting/northing, with utm_zone '' because they are in
        the odometry frame ``frame_id``; NaN where odometry was missing. The directory gets map
        kind 'keyframes': it is never written over a localisation map, nor loaded as one.

        Args:
            root: map directory (replaced crash-safely, see :class:`MapDatabase`).
            backbone_name, backbone_fingerprint: identity of the encoder behind ``raw``.
            projector: head that maps raw to the stored full-size embeddings, if any.
            frame_id: odometry frame of the positions, recorded in map.json.

        Returns:
            The written map, or None when there are no keyframes yet.
        """
        if not self.count:
            log.warning('no keyframes yet; nothing saved to %s', root)
            return None
        return MapDatabase.write(
            root, self.raw, self.poses[:, :2], '', yaw=self.poses[:, 2], stamps_ns=self.stamps_ns,
            backbone_name=backbone_name, backbone_fingerprint=backbone_fingerprint,
            projector=projector, kind=KEYFRAMES,
            extra={'source': 'loop_closure', 'odom_frame': frame_id})


class KeyframePolicy:
    """Decides whether a frame becomes a keyframe: enough time, travel or appearance change."""

    def __init__(self, cfg: LoopClosureConfig) -> None:
        self.cfg = cfg
        self._last: tuple[int, tuple[float, float] | None, np.ndarray] | None = None

    def reset(self) -> None:
        """Forget the last keyframe (a new session): the next frame is kept."""
        self._last = None

    def decide(self, stamp_ns: int, xy_m: tuple[float, float] | None, unit: np.ndarray) -> bool:
        """Return True when the frame should be kept; a kept frame becomes the last keyframe.

        Args:
            stamp_ns: frame time, int nanoseconds.
            xy_m: odometry position, or None when missing (then distance cannot trigger).
            unit: (prefix,) unit embedding, as compared by the search.
        """
        cfg = self.cfg
        keep = self._last is None
        if not keep:
            last_stamp, last_xy, last_unit = self._last
            enabled = (cfg.min_interval_s, cfg.min_distance_m, cfg.min_embedding_change)
            if not any(enabled):
                keep = True
            elif cfg.min_interval_s and (stamp_ns - last_stamp) >= cfg.min_interval_s * 1e9:
                keep = True
            elif cfg.min_distance_m and xy_m is not None and last_xy is not None and (
                    np.hypot(xy_m[0] - last_xy[0], xy_m[1] - last_xy[1]) >= cfg.min_distance_m):
                keep = True
            elif cfg.min_embedding_change and (
                    1.0 - float(unit @ last_unit) >= cfg.min_embedding_change):
                keep = True
        if keep:
            last_xy = self._last[1] if self._last is not None else None
            self._last = (stamp_ns, xy_m if xy_m is not None else last_xy, unit)
        return keep
