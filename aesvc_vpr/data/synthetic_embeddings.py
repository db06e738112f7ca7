"""Seeded "foundation-model-like" embeddings of geotagged places, for tests and the head benchmark.

Raw embeddings of large self-supervised models are far from isotropic (PAPER.md, 'Why it works'):
they share a large mean direction, a few high-variance directions carry appearance (lighting,
weather, season) rather than place, and the place identity sits in a weaker subspace. This
generator reproduces that, in a random orthonormal basis so that no coordinate is special:

    x = mean_norm * u_0                                  shared mean direction
      + sum_k a_k * u_k            k < nuisance_dim      appearance / weather, per image, large
      + sum_j (c_pj + v_j) * w_j   j < place_dim         place code c_p (per place) + view jitter v
      + noise_std * e                                    isotropic noise over all dim dimensions

with a_k ~ N(0, nuisance_std^2 / (k + 1)) (a decaying nuisance spectrum),
c_pj ~ N(0, place_std^2 / (j + 1)^place_decay) and v_j ~ N(0, (view_std * scale_j)^2), where
scale_j is the place code's own std in that direction. Places lie ``spacing_m`` apart along a
meandering route in UTM metres; every image of a place gets a few metres of position jitter.
Database and queries are drawn the same way, so the database never sees a query's appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.signal import lfilter

from aesvc_vpr.errors import DatasetError

ORIGIN_UTM = (584_000.0, 4_476_000.0)   # an arbitrary easting/northing for the route start


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and the variance budget of the generator (defaults: 2,000 places, 10,000 db rows)."""

    dim: int = 384
    places: int = 2000
    db_per_place: int = 5
    queries_per_place: int = 1
    place_dim: int = 64          # the place identity subspace
    place_std: float = 1.0
    place_decay: float = 0.5     # spectrum exponent of the place code
    view_std: float = 0.6        # viewpoint jitter, relative to the place code's std
    nuisance_dim: int = 6        # appearance / weather directions
    nuisance_std: float = 4.0
    mean_norm: float = 12.0      # the shared mean direction
    noise_std: float = 0.15
    spacing_m: float = 30.0      # distance between consecutive places along the route
    position_jitter_m: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.place_dim + self.nuisance_dim + 1 > self.dim:
            raise DatasetError(f'synthetic: place_dim + nuisance_dim + 1 must be <= dim '
                               f'({self.place_dim} + {self.nuisance_dim} + 1 > {self.dim})')
        if min(self.places, self.db_per_place, self.queries_per_place, self.place_dim) < 1:
            raise DatasetError('synthetic: places, db_per_place, queries_per_place and '
                               'place_dim must be >= 1')


@dataclass(frozen=True)
class SyntheticSet:
    """A database and a query set of the same places."""

    database: np.ndarray       # (places * db_per_place, dim) float32, raw
    queries: np.ndarray        # (places * queries_per_place, dim) float32, raw
    db_place: np.ndarray       # (N_db,) int64 place id
    query_place: np.ndarray    # (N_q,) int64 place id
    db_utm: np.ndarray         # (N_db, 2) float64 easting/northing m
    query_utm: np.ndarray      # (N_q, 2) float64 easting/northing m


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticSet:
    """Draw a database and a query set (fully determined by ``cfg``, including its seed)."""
    rng = np.random.default_rng(cfg.seed)
    basis, _ = np.linalg.qr(rng.standard_normal((cfg.dim, cfg.dim)))   # columns orthonormal
    mean_dir = basis[:, 0]
    nuisance = basis[:, 1:1 + cfg.nuisance_dim]                          # (D, K)
    place_basis = basis[:, 1 + cfg.nuisance_dim:1 + cfg.nuisance_dim + cfg.place_dim]
    place_scale = cfg.place_std / np.arange(1, cfg.place_dim + 1) ** (cfg.place_decay / 2)
    codes = rng.standard_normal((cfg.places, cfg.place_dim)) * place_scale
    nuisance_scale = cfg.nuisance_std / np.sqrt(np.arange(1, cfg.nuisance_dim + 1))
    place_utm = _route(rng, cfg)

    def draw(per_place: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        place = np.repeat(np.arange(cfg.places), per_place)
        count = place.size
        code = codes[place] + rng.standard_normal((count, cfg.place_dim)) * (
            cfg.view_std * place_scale)
        appearance = rng.standard_normal((count, cfg.nuisance_dim)) * nuisance_scale
        x = (cfg.mean_norm * mean_dir + appearance @ nuisance.T + code @ place_basis.T
             + cfg.noise_std * rng.standard_normal((count, cfg.dim)))
        utm = place_utm[place] + rng.normal(0.0, cfg.position_jitter_m, (count, 2))
        return x.astype(np.float32), place.astype(np.int64), utm

    database, db_place, db_utm = draw(cfg.db_per_place)
    queries, query_place, query_utm = draw(cfg.queries_per_place)
    return SyntheticSet(database, queries, db_place, query_place, db_utm, query_utm)


def _route(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """(places, 2) UTM positions ``spacing_m`` apart along a gently turning route."""
    heading = np.cumsum(rng.normal(0.0, 0.25, cfg.places))
    steps = cfg.spacing_m * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    return np.asarray(ORIGIN_UTM) + np.cumsum(steps, axis=0) - steps[0]


@dataclass(frozen=True)
class OrderedConfig:
    """Ordered embeddings of many places, as a trained (SS)2D head outputs them.

    Coordinate j of a place code has std (j + 1)^(-decay / 2), so leading prefixes hold most of
    the place identity; consecutive places along a route are correlated (``route_corr``), so
    near places look alike, as streets do. A view is its place code plus jitter of ``view_std``
    times each coordinate's std plus isotropic ``noise_std``; database rows and query views of a
    place use different random streams. Generated in blocks of ``block_places`` places from
    seeds (seed, block), so 10M rows never need to be in memory at once.
    """

    dim: int = 256
    db_per_place: int = 5
    decay: float = 1.0
    route_corr: float = 0.6
    view_std: float = 0.45
    noise_std: float = 0.02
    block_places: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.dim, self.db_per_place, self.block_places) < 1:
            raise DatasetError('synthetic: dim, db_per_place and block_places must be >= 1')
        if not 0.0 <= self.route_corr < 1.0:
            raise DatasetError(f'synthetic: route_corr must be in [0, 1), got {self.route_corr}')


def ordered_database_blocks(cfg: OrderedConfig, count: int) -> Iterator[np.ndarray]:
    """Yield the first ``count`` database rows, place by place, in (rows, dim) float32 blocks."""
    per_block = cfg.block_places * cfg.db_per_place
    for block in range((count + per_block - 1) // per_block):
        codes = _ordered_codes(cfg, block)
        rows = np.repeat(codes, cfg.db_per_place, axis=0)[:count - block * per_block]
        yield _views(cfg, rows, np.random.default_rng([cfg.seed, block, 1]))


def ordered_queries(cfg: OrderedConfig, count: int, queries: int,
                    seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Held-out query views of random places among the first ``count`` database rows.

    Returns:
        (queries, dim) float32 views, never database rows; (queries,) int64 place ids.
    """
    places = count // cfg.db_per_place
    if places < 1:
        raise DatasetError(f'synthetic: {count} rows hold no whole place')
    rng = np.random.default_rng([cfg.seed, seed])
    chosen = np.sort(rng.choice(places, min(queries, places), replace=False))
    views = np.empty((len(chosen), cfg.dim), np.float32)
    blocks = chosen // cfg.block_places
    for block in np.unique(blocks):
        picked = blocks == block
        codes = _ordered_codes(cfg, int(block))[chosen[picked] % cfg.block_places]
        rng = np.random.default_rng([cfg.seed, int(block), 2, seed])
        views[picked] = _views(cfg, codes, rng)
    return views, chosen.astype(np.int64)


def _ordered_codes(cfg: OrderedConfig, block: int) -> np.ndarray:
    """(block_places, dim) place codes of one block, correlated along the route."""
    rng = np.random.default_rng([cfg.seed, block, 0])
    z = rng.standard_normal((cfg.block_places, cfg.dim))
    # AR(1) along the route: code_i = corr * code_(i-1) + sqrt(1 - corr^2) * z_i, unit variance
    codes = lfilter([np.sqrt(1.0 - cfg.route_corr ** 2)], [1.0, -cfg.route_corr], z, axis=0)
    return codes * _ordered_scale(cfg)


def _ordered_scale(cfg: OrderedConfig) -> np.ndarray:
    return np.arange(1, cfg.dim + 1) ** (-cfg.decay / 2)


def _views(cfg: OrderedConfig, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    jitter = rng.standard_normal(codes.shape) * (cfg.view_std * _ordered_scale(cfg))
    noise = rng.standard_normal(codes.shape) * cfg.noise_std
    return (codes + jitter + noise).astype(np.float32)
