"""Localisation over a sequence: each frame's search, then the place filter's estimate.

``SequenceLocalizer`` is what the node, bag replay and ``eval --sequence`` run when
``filter.mode`` is ``hmm``: the same search as ``Localizer`` (the raw ranking stays available),
then ``PlaceFilter``. A pose prior (``set_prior``) reweights the belief and restricts the search
to the places within its radius (grown by the distance travelled since) until the observations
contradict it for ``contradiction_frames`` frames in a row; then the search is global again.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import time

import numpy as np

from aesvc_vpr.config import FilterConfig
from aesvc_vpr.retrieval.localizer import Localization, Localizer, Match
from aesvc_vpr.retrieval.place_filter import BeliefSummary, PlaceFilter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracked:
    """One frame's result.

    Attributes:
        raw: the frame's own top-k (``match.top_k``), as ``Localizer.localize`` returns it.
        estimate: the places ranked by the filter's belief (same length; scores are this
            frame's exact cosines of those places); equals ``raw`` when the filter is off.
        belief: the filter's summary, None when the filter is off.
        filter_s: seconds spent in the filter (and the restricted search) for this frame.
        restricted: the search was restricted to a pose prior's radius.
        estimate_mass: the belief within ``match.radius_m`` of the estimate (the filter's
            confidence in it); None when the filter is off or its belief is uniform, where the
            estimate is the frame's own best match.
    """

    raw: Localization
    estimate: Localization
    belief: BeliefSummary | None
    filter_s: float
    restricted: bool
    estimate_mass: float | None = None


@dataclass
class _Prior:
    """An active pose prior: where, how far the search reaches, and how often it failed."""

    xy: np.ndarray
    radius_m: float
    travelled_at_start_m: float
    contradicted: int = 0


class SequenceLocalizer:
    """A ``Localizer`` followed by the sequence filter (or not, with ``filter.mode: off``)."""

    def __init__(self, localizer: Localizer, cfg: FilterConfig) -> None:
        """Wrap a loaded Localizer; the filter covers its map's places.

        Raises:
            MapError: the map's positions are unusable for the filter.
        """
        self.localizer = localizer
        self.cfg = cfg
        self.filter = PlaceFilter(localizer.mapdb.utm, cfg)
        self._prior: _Prior | None = None
        self.counters = {'priors': 0, 'priors_dropped': 0}

    @property
    def enabled(self) -> bool:
        """Whether the filter runs (``filter.mode != 'off'``)."""
        return self.cfg.mode != 'off'

    @property
    def prior_active(self) -> bool:
        """Whether the search is currently restricted by a pose prior."""
        return self._prior is not None

    def configure(self, cfg: FilterConfig) -> None:
        """Take new filter settings; switching the mode restarts the belief."""
        if cfg.mode != self.cfg.mode:
            self.filter.reset()
            self._prior = None
        self.cfg = cfg
        self.filter.cfg = cfg

    def reset(self) -> None:
        """Forget the belief and any prior (e.g. the clock was reset)."""
        self.filter.reset()
        self._prior = None

    def set_prior(self, xy: np.ndarray, sigma_m: float) -> int:
        """Initialise the belief at a pose prior and restrict the search around it.

        Args:
            xy: (2,) position in the map's frame (UTM), metres.
            sigma_m: its standard deviation, metres; ``filter.prior_sigma_m`` > 0 overrides.

        Returns:
            The number of places within the prior's radius (0: off the map, ignored).
        """
        sigma_m = self.cfg.prior_sigma_m or sigma_m
        places = self.filter.set_prior(np.asarray(xy, np.float64), sigma_m)
        if places:
            self._prior = _Prior(np.asarray(xy, np.float64),
                                 self.cfg.prior_radius_sigmas * max(sigma_m, 1e-3),
                                 self.filter.travelled_m)
            self.counters['priors'] += 1
        log.info('pose prior at (%.1f, %.1f), sigma %.1f m: %d places within %.1f m', xy[0],
                 xy[1], sigma_m, places, self.cfg.prior_radius_sigmas * sigma_m)
        return places

    def localize(self, image_rgb: np.ndarray, stamp_ns: int,
                 odometer_m: float | None = None) -> Tracked:
        """Embed one image, search it and run the filter.

        Args:
            image_rgb: (H, W, 3) uint8 RGB.
            stamp_ns: the image's stamp.
            odometer_m: odometry path length at the image's stamp, None without odometry.
        """
        start = time.perf_counter()
        full = self.localizer.embed([image_rgb])[0]
        embed_s = time.perf_counter() - start
        return self.track(full, stamp_ns, odometer_m, embed_s)

    def track(self, full_embedding: np.ndarray, stamp_ns: int, odometer_m: float | None = None,
              embed_s: float = 0.0) -> Tracked:
        """Search one embedding from ``Localizer.embed`` and run the filter on its candidates.

        Args:
            full_embedding: (E,) float32.
            stamp_ns: the image's stamp.
            odometer_m: odometry path length at the stamp, None without odometry.
            embed_s: the embedding time, carried into the results.
        """
        loc = self.localizer
        top_k = loc.match_cfg.top_k
        k = max(top_k, self.cfg.top_k) if self.enabled else top_k
        found = loc.search(full_embedding[None, :], [stamp_ns], top_k=k)[0]
        raw = Localization(found.stamp_ns, found.matches[:top_k], embed_s, found.search_s)
        if not self.enabled:
            return Tracked(raw, raw, None, 0.0, False)
        start = time.perf_counter()
        candidates, restricted = self._candidates(full_embedding, found.matches, k)
        belief = self.filter.step(stamp_ns, np.array([m.index for m in candidates], np.int64),
                                  np.array([m.score for m in candidates]), odometer_m)
        rows = belief.rows[:top_k]
        estimate_matches = self._matches(rows, loc.scores_of(full_embedding, rows)) \
            if len(rows) else raw.matches
        mass = self._mass_near_estimate(belief, loc.match_cfg.radius_m) if len(rows) else None
        filter_s = time.perf_counter() - start
        estimate = Localization(found.stamp_ns, estimate_matches, embed_s,
                                found.search_s + filter_s)
        return Tracked(raw, estimate, belief, filter_s, restricted, mass)

    def diagnostics(self) -> dict[str, object]:
        """Filter counters and prior state for /diagnostics."""
        return {**{f'filter_{k}': v for k, v in self.filter.counters.as_dict().items()},
                **{f'filter_{k}': v for k, v in self.counters.items()},
                'filter_prior_active': self.prior_active}

    def _mass_near_estimate(self, belief: BeliefSummary, radius_m: float) -> float:
        """Sum the summarised belief within ``radius_m`` of its most probable place.

        The summary's rows (the most probable places) carry nearly all the mass once the belief
        has converged; the uniform rest, spread over the whole map, is left out.
        """
        xy = self.localizer.mapdb.utm[belief.rows]
        near = np.hypot(*(xy - xy[0]).T) <= radius_m
        return float(belief.probabilities[near].sum())

    def _candidates(self, full_embedding: np.ndarray, found: list[Match],
                    k: int) -> tuple[list[Match], bool]:
        """Return the global top-k, or the top-k within an active prior's radius."""
        prior = self._prior
        if prior is None:
            return found, False
        radius_m = prior.radius_m + (self.filter.travelled_m - prior.travelled_at_start_m)
        rows = self.filter.rows_within(prior.xy, radius_m)
        scores = self.localizer.scores_of(full_embedding, rows)
        order = np.argsort(-scores, kind='stable')[:k]
        inside = self._matches(rows[order], scores[order])
        # contradicted: the global best lies outside the radius and beats the best inside it
        if found and inside and found[0].score > inside[0].score:
            prior.contradicted += 1
        else:
            prior.contradicted = 0
        if prior.contradicted >= self.cfg.contradiction_frames:
            log.warning('pose prior contradicted for %d frames: back to global search',
                        prior.contradicted)
            self._prior = None
            self.counters['priors_dropped'] += 1
            return found, False
        return inside, True

    def _matches(self, rows: np.ndarray, scores: np.ndarray) -> list[Match]:
        utm, yaw = self.localizer.mapdb.utm, self.localizer.mapdb.yaw
        return [Match(int(i), float(s), float(utm[i, 0]), float(utm[i, 1]), float(yaw[i]))
                for i, s in zip(rows, scores)]


def filter_sequence(utm: np.ndarray, cfg: FilterConfig, rows: np.ndarray, scores: np.ndarray,
                    stamps_ns: np.ndarray, odometer_m: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Run the filter over precomputed candidate lists, frame by frame in the given order.

    The same ``PlaceFilter.step`` calls ``SequenceLocalizer.track`` makes, for evaluation on
    batch-searched queries.

    Args:
        utm: (N, 2) map positions, metres.
        cfg: the filter's parameters.
        rows: (M, k) int64 candidate map rows per frame, best first (-1: none).
        scores: (M, k) their cosine scores.
        stamps_ns: (M,) int64 frame stamps.
        odometer_m: (M,) odometry path length at each frame (NaN: none), or None.

    Returns:
        (M,) int64 the filter's most probable row per frame (the raw top-1 while the belief is
        uniform), and (M,) float64 seconds the filter took per frame.
    """
    filt = PlaceFilter(utm, cfg)
    best = np.asarray(rows, np.int64)[:, 0].copy() if len(rows) else np.empty(0, np.int64)
    seconds = np.zeros(len(rows))
    for i in range(len(rows)):
        odometer = None if odometer_m is None or not np.isfinite(odometer_m[i]) \
            else float(odometer_m[i])
        start = time.perf_counter()
        summary = filt.step(int(stamps_ns[i]), rows[i], scores[i], odometer)
        seconds[i] = time.perf_counter() - start
        if len(summary.rows):
            best[i] = summary.rows[0]
    return best, seconds
