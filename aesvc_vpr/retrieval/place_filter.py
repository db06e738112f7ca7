"""A forward Bayes filter over map places: where the robot is, given every frame so far.

One frame alone is often ambiguous; a sequence is not. The belief is a probability per map
place, held sparsely: up to ``max_support`` places carry their own mass, and the remaining mass
is spread evenly over all N places (``belief(i) = mass(i) + rest / N``). Per frame:

1. predict: mass moves to places whose distance from its place is near the distance travelled
   (a Gaussian on the distance, sigma = ``motion_sigma_m + motion_noise * d``), over a
   neighbour graph of the map built once per reach (the work scales with the support and its
   neighbourhood, never with N squared); the uniform part stays uniform. Once the most
   probable place has moved, moves against that direction of travel are discounted
   (``heading_weight``), so the belief does not split into a forward and a backward half;
2. mix: a fraction ``mixing`` of all mass becomes uniform, so a wrong belief can recover;
3. observe: a top-k place with cosine s gets likelihood ``max(exp((s - s_top1) / T), floor)``,
   every other place ``floor``;
4. prune: small entries return to the uniform part.

docs/localization_filter.md gives the model and its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree

from aesvc_vpr.config import FilterConfig
from aesvc_vpr.errors import MapError

log = logging.getLogger(__name__)

REACH_SIGMAS = 3.0        # transitions reach this many sigmas beyond the distance travelled
PRUNE_RATIO = 1e-4        # entries below this fraction of the peak return to the uniform part
GRAPH_SLACK = 1.5         # a rebuilt neighbour graph reaches this much further than needed
HEADING_RATE = 0.3        # how fast the direction of travel follows the most probable place


@dataclass(frozen=True)
class BeliefSummary:
    """The filter's answer for one frame.

    Attributes:
        rows: (K,) int64 map rows, most probable first (empty while the belief is uniform).
        probabilities: (K,) float64 belief of those rows.
        peak: belief of the most probable place (1 / N when uniform).
        entropy_nats: entropy of the whole belief (log N when uniform).
        support: places carrying their own mass.
    """

    rows: np.ndarray
    probabilities: np.ndarray
    peak: float
    entropy_nats: float
    support: int


@dataclass
class _Graph:
    """Map places within ``radius_m`` of each other, as CSR rows (self included)."""

    radius_m: float
    indptr: np.ndarray
    indices: np.ndarray
    distances_m: np.ndarray


@dataclass
class FilterCounters:
    """What the filter ignored or did, for diagnostics."""

    frames: int = 0
    stamp_backwards: int = 0       # frames older than the newest: no motion applied
    odom_backwards: int = 0        # odometer readings below the last (a reset): speed prior used
    priors: int = 0
    beyond_map: int = 0            # moves longer than the map's extent: the belief became uniform

    def as_dict(self) -> dict[str, int]:
        """Plain dict for diagnostics and reports."""
        return dict(self.__dict__)


class PlaceFilter:
    """The sequence filter over one map's places (ROS-free; the node and replay both run it)."""

    def __init__(self, utm: np.ndarray, cfg: FilterConfig) -> None:
        """Index the map's positions.

        Args:
            utm: (N, 2) place positions, metres (any planar frame).
            cfg: the filter's parameters.

        Raises:
            MapError: no places, or positions that are not finite.
        """
        utm = np.asarray(utm, np.float64)
        if utm.ndim != 2 or utm.shape[1] != 2 or not len(utm) or not np.isfinite(utm).all():
            raise MapError(f'the filter needs (N, 2) finite place positions, got {utm.shape}')
        self.cfg = cfg
        self.utm = utm
        self.count = len(utm)
        self._tree = cKDTree(utm)
        self._extent_m = float(np.hypot(*(utm.max(0) - utm.min(0))))   # bounding-box diagonal
        self._graph: _Graph | None = None
        self.counters = FilterCounters()
        self.reset()

    def reset(self) -> None:
        """Forget everything: uniform belief, no last stamp or odometer."""
        self._uniform_belief()
        self._stamp_ns: int | None = None
        self._odometer_m: float | None = None
        self._reach_m = 0.0
        self.travelled_m = 0.0          # distance applied since the reset, metres

    @property
    def belief_rows(self) -> np.ndarray:
        """Rows carrying their own mass (a copy)."""
        return self._rows.copy()

    def belief(self) -> np.ndarray:
        """Return the dense belief, (N,) float64 summing to 1 (for tests and plots; O(N))."""
        dense = np.full(self.count, self._rest / self.count)
        dense[self._rows] += self._mass
        return dense

    def step(self, stamp_ns: int, rows: np.ndarray, scores: np.ndarray,
             odometer_m: float | None = None) -> BeliefSummary:
        """Advance by one frame: predict with the motion, then weigh in the frame's candidates.

        Args:
            stamp_ns: the frame's stamp; a stamp not newer than the last applies no motion.
            rows: (k,) map rows of this frame's candidates, best first (-1 entries ignored).
            scores: (k,) their cosine scores.
            odometer_m: distance travelled since some fixed start (odometry path length) at
                the frame's stamp; None uses the speed prior.
        """
        self.counters.frames += 1
        distance_m = self._travelled(int(stamp_ns), odometer_m)
        if distance_m is not None:
            self.travelled_m += distance_m
            if distance_m > self._extent_m:
                # the motion model keeps nothing then, and its neighbour graph would hold
                # every pair of places (N squared)
                self.counters.beyond_map += 1
                self._uniform_belief()
            else:
                self._predict(distance_m)
        self._mix()
        rows = np.asarray(rows, np.int64)
        scores = np.asarray(scores, np.float64)
        keep = (rows >= 0) & (rows < self.count) & np.isfinite(scores)
        if keep.any():
            self._observe(rows[keep], scores[keep])
        self._prune()
        summary = self.summary()
        self._follow_heading(summary)
        return summary

    def set_prior(self, xy: np.ndarray, sigma_m: float, weight: float = 1.0) -> int:
        """Reweight the belief by a Gaussian pose prior (e.g. RViz's 2D Pose Estimate).

        Args:
            xy: (2,) position in the map's frame, metres.
            sigma_m: its standard deviation, metres (> 0).
            weight: 1 replaces the belief by the prior; below 1 keeps that fraction of it.

        Returns:
            How many places lie within ``prior_radius_sigmas`` sigmas (0: the prior is off the
            map and changes nothing).
        """
        sigma_m = max(float(sigma_m), 1e-3)
        rows = self.rows_within(xy, self.cfg.prior_radius_sigmas * sigma_m)
        if not len(rows):
            return 0
        d2 = np.sum((self.utm[rows] - np.asarray(xy, np.float64)) ** 2, axis=1)
        prior = np.exp(-0.5 * d2 / sigma_m ** 2)
        prior /= prior.sum()
        kept = 1.0 - min(max(float(weight), 0.0), 1.0)
        union, inverse = np.unique(np.concatenate([self._rows, rows]), return_inverse=True)
        mass = np.zeros(len(union))
        np.add.at(mass, inverse[:len(self._rows)], kept * self._mass)
        np.add.at(mass, inverse[len(self._rows):], (1.0 - kept) * prior)
        self._rows, self._mass, self._rest = union, mass, kept * self._rest
        self.counters.priors += 1
        self._normalise()
        self._prune()
        return len(rows)

    def observe_position(self, xy: np.ndarray, sigma_m: float) -> int:
        """Weigh in a position fix (e.g. GPS): a Gaussian likelihood around it, ``floor`` beyond.

        Args:
            xy: (2,) position in the map's frame, metres.
            sigma_m: its standard deviation, metres (> 0).

        Returns:
            How many places lie within ``prior_radius_sigmas`` sigmas (0: off the map, ignored).
        """
        sigma_m = max(float(sigma_m), 1e-3)
        rows = self.rows_within(xy, self.cfg.prior_radius_sigmas * sigma_m)
        if len(rows):
            d2 = np.sum((self.utm[rows] - np.asarray(xy, np.float64)) ** 2, axis=1)
            self._weigh(rows, np.exp(-0.5 * d2 / sigma_m ** 2))
            self._prune()
        return len(rows)

    def rows_within(self, xy: np.ndarray, radius_m: float) -> np.ndarray:
        """Map rows within ``radius_m`` of ``xy``, ascending."""
        return np.sort(np.asarray(self._tree.query_ball_point(np.asarray(xy, np.float64),
                                                              float(radius_m)), np.int64))

    def belief_of(self, rows: np.ndarray) -> np.ndarray:
        """Belief of the given rows, (len(rows),) float64."""
        rows = np.asarray(rows, np.int64)
        out = np.full(len(rows), self._rest / self.count)
        where = np.searchsorted(self._rows, rows)
        hit = where < len(self._rows)
        hit[hit] = self._rows[where[hit]] == rows[hit]
        out[hit] += self._mass[where[hit]]
        return out

    def summary(self, k: int = 20) -> BeliefSummary:
        """Return the k most probable places, the peak belief and the entropy of the belief."""
        base = self._rest / self.count
        if len(self._rows):
            order = np.argsort(-self._mass, kind='stable')[:k]
            rows, probabilities = self._rows[order], self._mass[order] + base
        else:
            rows, probabilities = np.empty(0, np.int64), np.empty(0)
        return BeliefSummary(rows, probabilities,
                             float(probabilities[0]) if len(rows) else base,
                             self._entropy(), len(self._rows))

    # the four steps ---------------------------------------------------------------------------

    def _travelled(self, stamp_ns: int, odometer_m: float | None) -> float | None:
        """Distance since the last frame; None when there is no motion to apply."""
        last_ns, last_odometer = self._stamp_ns, self._odometer_m
        if last_ns is not None and stamp_ns <= last_ns:
            self.counters.stamp_backwards += 1
            return None             # an older frame: its odometry is ignored, the newest kept
        self._stamp_ns = stamp_ns
        if odometer_m is not None and math.isfinite(odometer_m):
            self._odometer_m = float(odometer_m)
            if last_odometer is not None:
                if odometer_m >= last_odometer:
                    return float(odometer_m) - last_odometer
                self.counters.odom_backwards += 1
        if last_ns is None:
            return None
        return self.cfg.speed_mps * (stamp_ns - last_ns) * 1e-9

    def _uniform_belief(self) -> None:
        """Spread the belief evenly over the map: no place carries mass of its own."""
        self._rows = np.empty(0, np.int64)
        self._mass = np.empty(0, np.float64)
        self._rest = 1.0
        self._heading = np.zeros(2)     # (2,) direction of travel, length = its consistency
        self._peak_xy: np.ndarray | None = None

    def _predict(self, distance_m: float) -> None:
        if not len(self._rows):
            return
        cfg = self.cfg
        sigma_m = cfg.motion_sigma_m + cfg.motion_noise * distance_m
        reach_m = distance_m + REACH_SIGMAS * sigma_m
        graph = self._graph_within(reach_m)
        starts, ends = graph.indptr[self._rows], graph.indptr[self._rows + 1]
        lengths = ends - starts
        # (E,) edge positions: each source's CSR slice, concatenated
        owner = np.repeat(np.arange(len(self._rows)), lengths)
        offsets = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        edges = starts[owner] + offsets
        targets, dist = graph.indices[edges], graph.distances_m[edges]
        weights = np.exp(-0.5 * ((dist - distance_m) / sigma_m) ** 2) * (dist <= reach_m)
        strength = cfg.heading_weight * float(np.hypot(*self._heading))
        if strength > 0:
            step = self.utm[targets] - self.utm[self._rows[owner]]
            along = step @ self._heading / float(np.hypot(*self._heading))
            cos = np.divide(along, dist, out=np.ones_like(dist), where=dist > 0)
            weights *= np.exp(strength * (cos - 1.0))
        self._reach_m = reach_m
        norm = np.bincount(owner, weights, minlength=len(self._rows))
        lost = float(self._mass[norm <= 0].sum())   # nowhere to go: that mass becomes uniform
        flow = np.where(norm[owner] > 0, self._mass[owner] * weights
                        / np.where(norm[owner] > 0, norm[owner], 1.0), 0.0)
        rows, inverse = np.unique(targets, return_inverse=True)
        self._rows, self._mass = rows, np.bincount(inverse, flow, minlength=len(rows))
        self._rest += lost

    def _mix(self) -> None:
        eps = self.cfg.mixing
        self._mass *= 1.0 - eps
        self._rest = self._rest * (1.0 - eps) + eps

    def _observe(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self._weigh(rows, np.exp((scores - scores.max()) / self.cfg.temperature))

    def _weigh(self, rows: np.ndarray, likelihood: np.ndarray) -> None:
        """Multiply the belief by ``likelihood`` at ``rows`` (floored) and ``floor`` elsewhere."""
        floor = self.cfg.floor
        likelihood = np.maximum(likelihood, floor)
        union, inverse = np.unique(np.concatenate([self._rows, rows]), return_inverse=True)
        mass = np.zeros(len(union))
        mass[inverse[:len(self._rows)]] = self._mass
        lik = np.full(len(union), floor)
        np.maximum.at(lik, inverse[len(self._rows):], likelihood)
        base = self._rest / self.count
        # belief * likelihood, minus the part the new uniform rest (rest * floor) covers
        self._rows, self._mass = union, (mass + base) * lik - base * floor
        self._rest *= floor
        self._normalise()

    def _prune(self) -> None:
        if not len(self._rows):
            return
        keep = self._mass > PRUNE_RATIO * self._mass.max()
        if keep.sum() > self.cfg.max_support:
            top = np.argpartition(-self._mass, self.cfg.max_support - 1)[:self.cfg.max_support]
            keep = np.zeros(len(self._mass), bool)
            keep[top] = True
        if keep.all():
            return
        self._rest += float(self._mass[~keep].sum())
        self._rows, self._mass = self._rows[keep], self._mass[keep]

    def _follow_heading(self, summary: BeliefSummary) -> None:
        """Turn the direction of travel towards the latest move of the most probable place."""
        if not len(summary.rows):
            return
        xy = self.utm[summary.rows[0]]
        last, self._peak_xy = self._peak_xy, xy
        if last is None:
            return
        step = xy - last
        length = float(np.hypot(*step))
        if not 0 < length <= self._reach_m:
            return                  # no move, or a jump (recovery): no direction to learn
        # an average of unit steps: its length (0..1) says how consistent the direction is
        self._heading = (1 - HEADING_RATE) * self._heading + HEADING_RATE * step / length

    # helpers ----------------------------------------------------------------------------------

    def _normalise(self) -> None:
        total = float(self._mass.sum()) + self._rest
        self._mass /= total
        self._rest /= total

    def _entropy(self) -> float:
        base = self._rest / self.count
        belief = self._mass + base
        entropy = -float(np.sum(belief * np.log(np.maximum(belief, 1e-300))))
        if base > 0:
            entropy -= (self.count - len(self._rows)) * base * math.log(base)
        return entropy

    def _graph_within(self, reach_m: float) -> _Graph:
        graph = self._graph
        if graph is None or graph.radius_m < reach_m or graph.radius_m > 4 * GRAPH_SLACK * reach_m:
            radius_m = GRAPH_SLACK * reach_m
            pairs = self._tree.sparse_distance_matrix(self._tree, radius_m,
                                                      output_type='coo_matrix')
            # sparse_distance_matrix leaves out zero distances: add each place itself
            n = self.count
            rows = np.concatenate([pairs.row, np.arange(n)])
            cols = np.concatenate([pairs.col, np.arange(n)])
            dist = np.concatenate([pairs.data, np.zeros(n)])
            matrix = csr_matrix((dist + 1.0, (rows, cols)), shape=(n, n))   # +1 keeps zeros
            matrix.sort_indices()
            graph = _Graph(radius_m, matrix.indptr.astype(np.int64),
                           matrix.indices.astype(np.int64), matrix.data - 1.0)
            self._graph = graph
            log.debug('filter neighbour graph: %d places, radius %.1f m, %d edges', n, radius_m,
                      len(graph.indices))
        return graph
