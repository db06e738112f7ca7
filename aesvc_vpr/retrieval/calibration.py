"""A calibrated match probability: P(top-1 within the radius | score, margin, spread).

Three features of one frame's top-k (``match_features``): the top-1 cosine, the margin to the
second, and the spatial spread of the candidates (RMS distance from the top-1 place, metres).
A logistic regression on them gives a linear score, and isotonic regression (pool adjacent
violators) maps that score to a probability that is monotone in it. Both are fitted on labelled
queries (``aesvc-vpr calibrate``) and stored in the map directory as ``calibration-<sha>.json``,
named in map.json's ``files`` (so it is covered by the map's integrity data) and tied to the
map's embeddings, head and searched prefix: a calibration is refused for any other map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from aesvc_vpr.common.fileio import atomic_write, sha256_bytes
from aesvc_vpr.errors import MapError
from aesvc_vpr.retrieval.map_schema import MAP_JSON, validate
from aesvc_vpr.retrieval.map_writes import map_writer_lock, put_file, remove_stale
from aesvc_vpr.retrieval.mapdb import MapDatabase

log = logging.getLogger(__name__)

FEATURES = ('top1_score', 'margin', 'log_spread')
CALIBRATION_VERSION = 1
L2 = 1e-3                # ridge on the logistic weights: separable data must not diverge


def match_features(scores: np.ndarray, positions: np.ndarray, radius_m: float) -> np.ndarray:
    """Return the features of one frame's candidates.

    Args:
        scores: (k,) cosine scores, best first (k >= 1).
        positions: (k, 2) their map positions, metres.
        radius_m: the correctness radius; the spread is measured in its units.

    Returns:
        (3,) float64: top-1 score, top-1 minus top-2 score (0 with one candidate), and
        log(1 + RMS distance of the candidates from the top-1 place / radius).
    """
    scores = np.asarray(scores, np.float64)
    positions = np.asarray(positions, np.float64)
    margin = scores[0] - scores[1] if len(scores) > 1 else 0.0
    spread = np.sqrt(np.mean(np.sum((positions - positions[0]) ** 2, axis=1)))
    return np.array([scores[0], margin, np.log1p(spread / radius_m)])


def pool_adjacent_violators(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the non-decreasing sequence closest to y in least squares, as blocks.

    Args:
        y: (n,) targets in input order.

    Returns:
        (means, sizes): one entry per block; ``np.repeat(means, sizes)`` is the fit.
    """
    means: list[float] = []
    sizes: list[int] = []
    for value in np.asarray(y, np.float64):
        means.append(float(value))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            size = sizes[-2] + sizes[-1]
            means[-2] = (sizes[-2] * means[-2] + sizes[-1] * means[-1]) / size
            sizes[-2] = size
            del means[-1], sizes[-1]
    return np.array(means), np.array(sizes, np.int64)


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of y on x: knots for ``isotonic_predict``.

    Args:
        x: (n,) inputs; y: (n,) targets in [0, 1].

    Returns:
        (knots_x, knots_y): each pooled block's mean x and its fitted value, both
        non-decreasing.
    """
    order = np.argsort(x, kind='stable')
    xs, ys = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    means, sizes = pool_adjacent_violators(ys)
    ends = np.cumsum(sizes)
    centres = np.add.reduceat(xs, ends - sizes) / sizes
    return centres, means


def isotonic_predict(knots_x: np.ndarray, knots_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate the fitted step function, linear between knots, flat beyond the ends."""
    return np.interp(np.asarray(x, np.float64), knots_x, knots_y)


def logistic_fit(features: np.ndarray, correct: np.ndarray, iterations: int = 50
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logistic regression by Newton's method on standardised features, with a small ridge.

    Returns:
        (mean (F,), std (F,), weights (F + 1,) with the bias last).
    """
    mean, std = features.mean(0), features.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    x = np.hstack([(features - mean) / std, np.ones((len(features), 1))])
    y = correct.astype(np.float64)
    w = np.zeros(x.shape[1])
    ridge = L2 * len(x) * np.eye(x.shape[1])
    ridge[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + ridge @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return mean, std, w


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration and the map state it belongs to."""

    map_identity: dict[str, Any]    # embeddings sha256, head fingerprint, prefix, top-k, radius
    mean: list[float]
    std: list[float]
    weights: list[float]
    knots_x: list[float]
    knots_y: list[float]
    held_out: dict[str, Any]        # ECE and counts on the held-out queries
    version: int = CALIBRATION_VERSION
    features: tuple[str, ...] = FEATURES

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(top-1 correct) of (n, 3) or (3,) features."""
        f = np.atleast_2d(np.asarray(features, np.float64))
        z = ((f - np.array(self.mean)) / np.array(self.std)) @ np.array(self.weights[:-1]) \
            + self.weights[-1]
        out = np.clip(isotonic_predict(np.array(self.knots_x), np.array(self.knots_y), z), 0, 1)
        return out if np.ndim(features) == 2 else out[:1]

    def to_json(self) -> str:
        """Serialise (sorted keys: the same calibration gives the same bytes)."""
        return json.dumps({**asdict(self), 'features': list(self.features)}, sort_keys=True,
                          indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> Calibration:
        """Parse a stored calibration.

        Raises:
            MapError: not a calibration of this version.
        """
        try:
            data = json.loads(text)
            if data.get('version') != CALIBRATION_VERSION:
                raise MapError(f'{where}: calibration version {data.get("version")}, expected '
                               f'{CALIBRATION_VERSION}; run `aesvc-vpr calibrate` again')
            data['features'] = tuple(data['features'])
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise MapError(f'{where}: not a calibration file ({err})') from err

    def check_map(self, identity: dict[str, Any], where: str) -> None:
        """Refuse a calibration fitted on another map, head, prefix or top-k.

        Raises:
            MapError: the identities differ (the message names the differing fields).
        """
        differ = sorted(k for k in set(identity) | set(self.map_identity)
                        if identity.get(k) != self.map_identity.get(k))
        if differ:
            raise MapError(f'{where}: the calibration was fitted for another map state '
                           f'({", ".join(differ)} differ); run `aesvc-vpr calibrate` for this '
                           'map and prefix')


def fit_calibration(features: np.ndarray, correct: np.ndarray, identity: dict[str, Any],
                    held_out_fraction: float = 0.3, seed: int = 0, bins: int = 10
                    ) -> tuple[Calibration, dict[str, np.ndarray]]:
    """Fit on part of the labelled queries and measure the ECE on the rest.

    Args:
        features: (n, 3) from ``match_features``.
        correct: (n,) bool, the top-1 lies within the radius.
        identity: the map state (``map_identity``).
        held_out_fraction: queries kept out of the fit to score it.
        seed: of the split.
        bins: equal-width probability bins of the reliability diagram and the ECE.

    Returns:
        The calibration and the held-out (probability, correct) arrays for the diagram.

    Raises:
        MapError: too few queries, or all of one class in the fitting part.
    """
    n = len(features)
    order = np.random.default_rng(seed).permutation(n)
    held = order[:int(round(held_out_fraction * n))]
    fit = order[len(held):]
    if len(fit) < 10 or len(held) < 5:
        raise MapError(f'{n} labelled queries are too few to calibrate (need >= 15)')
    if correct[fit].all() or not correct[fit].any():
        raise MapError('the fitting queries are all correct or all wrong: nothing to calibrate')
    mean, std, w = logistic_fit(features[fit], correct[fit])
    z = ((features[fit] - mean) / std) @ w[:-1] + w[-1]
    knots_x, knots_y = isotonic_fit(z, correct[fit])
    partial = Calibration(identity, mean.tolist(), std.tolist(), w.tolist(), knots_x.tolist(),
                          knots_y.tolist(), {})
    p_held = partial.probability(features[held])
    ece = expected_calibration_error(p_held, correct[held], bins)
    summary = {'ece': ece, 'queries': int(len(held)), 'fitted_on': int(len(fit)),
               'accuracy': float(correct[held].mean()), 'bins': bins,
               'brier': float(np.mean((p_held - correct[held]) ** 2))}
    calibration = Calibration(identity, mean.tolist(), std.tolist(), w.tolist(),
                              knots_x.tolist(), knots_y.tolist(), summary)
    log.info('calibration: ECE %.4f on %d held-out queries (fitted on %d)', ece, len(held),
             len(fit))
    return calibration, {'probability': p_held, 'correct': correct[held]}


def expected_calibration_error(probability: np.ndarray, correct: np.ndarray,
                               bins: int = 10) -> float:
    """Sum over equal-width bins of |mean probability - accuracy| weighted by the bin's share."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(probability[inside].mean() - correct[inside].mean())
    return float(total)


def map_identity(embeddings_sha256: str, head_fingerprint: str, prefix_dim: int, top_k: int,
                 radius_m: float) -> dict[str, Any]:
    """Return what a calibration depends on: the searched vectors, the prefix, top-k and radius."""
    return {'embeddings_sha256': embeddings_sha256, 'head_fingerprint': head_fingerprint,
            'prefix_dim': int(prefix_dim), 'top_k': int(top_k), 'radius_m': float(radius_m)}


def map_identity_of(mapdb: MapDatabase, prefix_dim: int, top_k: int,
                    radius_m: float) -> dict[str, Any]:
    """``map_identity`` of a loaded map: the searched vectors are its embeddings file."""
    files = mapdb.meta['files']
    searched = files.get('embeddings', files['raw'])
    return map_identity(searched['sha256'], mapdb.head_fingerprint, prefix_dim, top_k, radius_m)


def store_calibration(root: str | Path, calibration: Calibration) -> Path:
    """Add the calibration to a map directory, covered by map.json's hashes.

    Written as ``calibration-<sha>.json`` under the map's writer lock; map.json, rewritten last,
    names it, and a previous calibration file is removed after that.

    Raises:
        MapError: another writer holds the map, map.json is invalid, or a write fails.
    """
    root = Path(root)
    with map_writer_lock(root):
        try:
            meta = validate(json.loads((root / MAP_JSON).read_text()), root)
            entry = put_file(root, 'calibration', '.json', calibration.to_json().encode())
            meta['files']['calibration'] = entry
            meta = validate(json.loads(json.dumps(meta)), root)
            with atomic_write(root / MAP_JSON, 'w', step='map.json.tmp') as f:
                json.dump(meta, f, indent=1)
            remove_stale(root, meta['files'])
        except (OSError, ValueError) as err:
            raise MapError(f'{root}: cannot store the calibration ({err}); the map is '
                           'unchanged') from err
    return root / entry['name']


def load_calibration(mapdb: MapDatabase, prefix_dim: int, top_k: int,
                     radius_m: float) -> Calibration | None:
    """Return the map's calibration for this prefix, top-k and radius; None when it has none.

    Raises:
        MapError: the file differs from its hash in map.json, or belongs to another map state.
    """
    entry = mapdb.meta['files'].get('calibration')
    if entry is None:
        return None
    path = mapdb.file('calibration')
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MapError(f'{path}: cannot read the calibration ({err})') from err
    if sha256_bytes(data) != entry['sha256']:
        raise MapError(f'{path}: sha256 differs from map.json (corrupt or modified); run '
                       '`aesvc-vpr calibrate` again')
    calibration = Calibration.from_json(data.decode('utf-8', 'replace'), str(path))
    calibration.check_map(map_identity_of(mapdb, prefix_dim, top_k, radius_m), str(path))
    return calibration


def spread_covariance(scores: np.ndarray, positions: np.ndarray, probability: float,
                      radius_m: float, temperature: float = 0.02) -> np.ndarray:
    """Return the position covariance of a published place from its candidates (docs/node.md).

    The published place (row 0) is right with ``probability``; the rest is shared among the
    other candidates in proportion to ``exp((s_i - s_0) / temperature)``. The covariance is the
    probability-weighted second moment of the candidates about the published place, plus
    ``radius_m ** 2`` on the diagonal for the published place's own extent.

    Args:
        scores: (k,) cosines, the published place first.
        positions: (k, 2) their positions, metres.
        probability: calibrated P(published place within ``radius_m``).
        radius_m: the correctness radius.
        temperature: spread of the remaining probability over the other candidates.

    Returns:
        (2, 2) float64 covariance, metres squared.
    """
    scores = np.asarray(scores, np.float64)
    offsets = np.asarray(positions, np.float64) - positions[0]
    weights = np.zeros(len(scores))
    weights[0] = probability
    if len(scores) > 1:
        rest = np.exp((scores[1:] - scores[0]) / temperature)
        weights[1:] = (1.0 - probability) * rest / rest.sum()
    moment = (offsets * weights[:, None]).T @ offsets
    return moment + radius_m ** 2 * np.eye(2)
