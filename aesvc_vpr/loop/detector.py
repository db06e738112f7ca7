"""Loop-closure detection: "the frame I see now is a place I have been before", keyed by stamps.

The detector builds its map online from its own keyframes and answers each frame with at most
one :class:`LoopClosure` (query stamp, matched keyframe stamp, score, inliers, matched pose).
Stamps are the portable key SLAM back ends use (LIO-SAM, Hydra, voxgraph, maplab). It takes
embeddings, not images, so it runs the same behind the ROS node, a bag evaluation or a test.

Per frame: search keyframes older than the exclusion window, then verify the best candidate
with a score threshold, temporal consistency (k consecutive frames whose matches agree in the
map) and, optionally, an ORB/SIFT essential-matrix check on keyframe thumbnails.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging

import numpy as np

from aesvc_vpr.config import LoopClosureConfig
from aesvc_vpr.loop.geometric import GeometricVerifier, make_thumbnail, Thumbnail, ThumbnailRing
from aesvc_vpr.loop.keyframes import KeyframePolicy, KeyframeStore
from aesvc_vpr.loop.odometry import is_clock_reset, log_sparsely, OdometryTrack

log = logging.getLogger(__name__)

COUNTERS = ('frames', 'keyframes', 'frames_out_of_order', 'bad_embedding', 'odom_missing',
            'candidates', 'consistent', 'geometric_rejected', 'geometric_no_thumbnail', 'loops',
            'clock_resets')


@dataclass(frozen=True)
class LoopClosure:
    """One verified loop: the query frame revisits the place of an earlier keyframe."""

    t_query_ns: int
    t_match_ns: int
    score: float                 # cosine of the prefix embeddings
    inliers: int                 # essential-matrix inliers; -1 when the geometric check is off
    match_pose: tuple[float, float, float] | None   # keyframe odometry x_m, y_m, yaw_rad


class LoopClosureDetector:
    """Keyframe map, exclusion window and verification chain over a stream of embeddings."""

    def __init__(self, cfg: LoopClosureConfig | None = None, prefix_dim: int | None = None,
                 verifier: GeometricVerifier | None = None) -> None:
        """Start with an empty map (``keyframes.load_prior`` adds an earlier session's).

        Args:
            cfg: detector settings.
            prefix_dim: leading embedding dimensions searched; None searches the full embedding.
            verifier: geometric verifier to use when ``cfg.geometric_check`` names its method
                (e.g. one that caches results); default: a new one.
        """
        self.keyframes = KeyframeStore(prefix_dim)
        self.odometry = OdometryTrack()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._last_stamp_ns: int | None = None
        self._streak = 0
        self._previous_best: int | None = None
        self.thumbnails = ThumbnailRing(0)
        self._verifier = verifier
        self._cfg = cfg or LoopClosureConfig()
        self._policy = KeyframePolicy(self._cfg)
        self.cfg = self._cfg

    @property
    def cfg(self) -> LoopClosureConfig:
        """The current settings; assigning new ones applies them to the next frame."""
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: LoopClosureConfig) -> None:
        self._cfg = cfg
        self._policy.cfg = cfg
        self.thumbnails.resize(cfg.thumbnail_ring_size if cfg.geometric_check != 'off' else 0)
        method = cfg.geometric_check
        if method == 'off':
            self._verifier = None
        elif self._verifier is None or self._verifier.method != method:
            self._verifier = GeometricVerifier(method)

    @property
    def counters(self) -> dict[str, int]:
        """Frame, keyframe, verification and odometry counts (a copy), for diagnostics."""
        return {**self._counters, **self.odometry.counters}

    def set_prefix_dim(self, prefix_dim: int | None) -> None:
        """Search another prefix size from now on (re-derived from stored embeddings)."""
        self.keyframes.set_prefix_dim(prefix_dim)

    def add_odometry(self, stamp_ns: int, x_m: float, y_m: float, yaw_rad: float) -> bool:
        """Feed one odometry pose (see ``OdometryTrack.add``); a bad one returns False."""
        return self.odometry.add(stamp_ns, x_m, y_m, yaw_rad)

    def process(self, stamp_ns: int, embedding: np.ndarray, *, raw: np.ndarray | None = None,
                image: np.ndarray | None = None, thumbnail: Thumbnail | None = None,
                pose: tuple[float, float, float] | None = None) -> LoopClosure | None:
        """Search, verify, then maybe keep the frame as a keyframe.

        Args:
            stamp_ns: frame time, int nanoseconds; frames not newer than the previous one are
                counted and skipped, unless the clock jumped back by more than
                ``odometry.CLOCK_RESET_S``: then a new session starts in the same store.
            embedding: (E,) full-size projected embedding (not necessarily normalised).
            raw: (D,) raw backbone embedding, stored for the map file; default ``embedding``.
            image: (H, W, 3) uint8 RGB frame, needed by the geometric check.
            thumbnail: the frame already shrunk by :func:`make_thumbnail`, instead of ``image``.
            pose: odometry (x_m, y_m, yaw_rad) at ``stamp_ns``; same as :meth:`add_odometry`.

        Returns:
            The verified loop closure, or None.

        Raises:
            LoopError: the embedding size differs from the keyframes' or is below prefix_dim.
        """
        self._counters['frames'] += 1
        if pose is not None:
            self.add_odometry(stamp_ns, *pose)
        vector = np.asarray(embedding, np.float32).reshape(-1)
        if not np.all(np.isfinite(vector)) or not np.any(vector):
            self._count('bad_embedding', 'frame at %d ns has a zero or non-finite embedding',
                        stamp_ns)
            return None
        if self._last_stamp_ns is not None and stamp_ns <= self._last_stamp_ns:
            if not is_clock_reset(self._last_stamp_ns, stamp_ns):
                self._count('frames_out_of_order', 'frame at %d ns is not newer than %d ns; '
                            'skipped', stamp_ns, self._last_stamp_ns)
                return None
            self._new_session(stamp_ns)
        self._last_stamp_ns = stamp_ns
        odom = self.odometry.at(stamp_ns, self._cfg.odom_max_age_s)
        if odom is None and self._needs_odometry():
            self._count('odom_missing', 'no odometry within %.2f s of the frame at %d ns',
                        self._cfg.odom_max_age_s, stamp_ns)
        path_m = odom.path_m if odom else self.odometry.path_m
        unit = self.keyframes.unit(vector)
        thumb = thumbnail if self._verifier is not None else None
        if self._verifier is not None and thumb is None and image is not None:
            thumb = make_thumbnail(image, self._cfg.thumbnail_side, self._cfg.focal_px)
        closure = self._query(stamp_ns, path_m, unit, thumb)
        pose_now = (odom.x_m, odom.y_m, odom.yaw_rad) if odom else None
        if self._policy.decide(stamp_ns, pose_now[:2] if pose_now else None, unit):
            raw_vector = vector if raw is None else np.asarray(raw, np.float32).reshape(-1)
            index = self.keyframes.append(stamp_ns, vector, raw_vector, pose_now, path_m)
            self._counters['keyframes'] += 1
            if thumb is not None:
                self.thumbnails.put(index, thumb)
        return closure

    def _new_session(self, stamp_ns: int) -> None:
        """Start a new session after a clock reset; every keyframe so far stays searchable."""
        self._counters['clock_resets'] += 1
        log.warning('frame clock jumped back from %d ns to %d ns (a looped bag, a simulator '
                    'reset or sim time): starting a new session; the %d keyframes so far stay '
                    'searchable', self._last_stamp_ns, stamp_ns, self.keyframes.count)
        self.keyframes.start_session()
        self._policy.reset()
        self._streak, self._previous_best = 0, None
        latest = self.odometry.latest
        if latest is not None and is_clock_reset(latest.stamp_ns, stamp_ns):
            self.odometry.reset()       # new-clock samples were refused as out of order

    def _query(self, stamp_ns: int, path_m: float, unit: np.ndarray,
               thumb: Thumbnail | None) -> LoopClosure | None:
        cfg = self._cfg
        n_eligible = self.keyframes.eligible(stamp_ns, path_m, cfg.exclusion_s, cfg.exclusion_m)
        scores, indices = self.keyframes.search(unit, n_eligible, cfg.top_k)
        keep = scores >= cfg.min_score
        scores, indices = scores[keep], indices[keep]
        if not len(indices):
            self._streak, self._previous_best = 0, None
            return None
        self._counters['candidates'] += 1
        best = int(indices[0])
        agrees = (self._previous_best is not None
                  and abs(best - self._previous_best) <= cfg.consistency_window_keyframes)
        self._streak = self._streak + 1 if agrees else 1
        self._previous_best = best
        if self._streak < cfg.consistency_k:
            return None
        self._counters['consistent'] += 1
        chosen, inliers = self._verify(indices, thumb)
        if chosen is None:
            return None
        self._counters['loops'] += 1
        pose = self.keyframes.poses[chosen]
        return LoopClosure(
            t_query_ns=int(stamp_ns), t_match_ns=int(self.keyframes.stamps_ns[chosen]),
            score=float(scores[list(indices).index(chosen)]), inliers=inliers,
            match_pose=tuple(float(v) for v in pose) if np.all(np.isfinite(pose)) else None)

    def _verify(self, indices: np.ndarray, thumb: Thumbnail | None) -> tuple[int | None, int]:
        """Find the first candidate (best first) passing the geometric check; its inliers."""
        if self._verifier is None:
            return int(indices[0]), -1
        if thumb is None:
            self._count('geometric_rejected', 'geometric check needs the query image; none given')
            return None, 0
        query = self._verifier.features(thumb)
        best_inliers = 0
        for index in indices:
            stored = self.thumbnails.get(int(index))
            if stored is None:
                self._counters['geometric_no_thumbnail'] += 1
                continue
            inliers = self._verifier.inliers(query, self._verifier.features(stored))
            if inliers >= self._cfg.min_inliers:
                return int(index), inliers
            best_inliers = max(best_inliers, inliers)
        self._counters['geometric_rejected'] += 1
        log.debug('loop candidate rejected: %d inliers < %d', best_inliers, self._cfg.min_inliers)
        return None, best_inliers

    def _needs_odometry(self) -> bool:
        # missing counts only where odometry is required or was flowing before
        return self._cfg.exclusion_m > 0 or self.odometry.latest is not None

    def _count(self, name: str, message: str, *args: object) -> None:
        self._counters[name] += 1
        log_sparsely(log, self._counters[name], message, *args)
