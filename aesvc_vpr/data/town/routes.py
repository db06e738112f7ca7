"""Drives through the town: the database survey and the query run, as poses along the streets.

The database drive is an Euler circuit over both directions of every street, so every street is
mapped looking either way. The query drive is a random walk without U-turns that comes home and
drives its first streets again: it visits places in another order than the survey, and it
closes a loop on itself (loop-closure scenarios).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aesvc_vpr.data.town.layout import Town
from aesvc_vpr.errors import DatasetError

LANE_M = 1.8        # survey car: centre of the right-hand lane, metres right of the centreline
TURN_M = 6.0        # heading blends over this distance either side of a crossing


@dataclass
class Poses:
    """Camera poses in the town's local frame (metres east/north of the centre, ENU yaw)."""

    xy_m: np.ndarray       # (N, 2) float64
    yaw_rad: np.ndarray    # (N,) float64, counter-clockwise from east

    def __len__(self) -> int:
        """Count the poses."""
        return int(self.yaw_rad.shape[0])


def node_xy(town: Town) -> np.ndarray:
    """Return (V, 2) float64 crossing positions; id i * (ny + 1) + j is at x[i], y[j]."""
    gx, gy = np.meshgrid(town.street_x_m, town.street_y_m, indexing='ij')
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def neighbours(town: Town) -> list[list[int]]:
    """Adjacency of the street grid: the crossings one block away from each crossing."""
    nx, ny = len(town.street_x_m), len(town.street_y_m)
    out: list[list[int]] = []
    for i in range(nx):
        for j in range(ny):
            out.append([a * ny + b for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
                        if 0 <= a < nx and 0 <= b < ny])
    return out


def survey_route(town: Town, rng: np.random.Generator) -> list[int]:
    """Plan an Euler circuit (Hierholzer) that drives every street once in each direction.

    Returns:
        Crossing ids in driving order; the first equals the last.
    """
    todo = [list(rng.permutation(n)) for n in neighbours(town)]
    stack, circuit = [int(rng.integers(len(todo)))], []
    while stack:
        here = stack[-1]
        if todo[here]:
            came_from = stack[-2] if len(stack) > 1 else -1
            options = [n for n in todo[here] if n != came_from] or todo[here]  # avoid U-turns
            nxt = int(options[0])
            todo[here].remove(nxt)
            stack.append(nxt)
        else:
            circuit.append(stack.pop())
    return circuit[::-1]


def query_route(town: Town, rng: np.random.Generator, length_m: float,
                overlap_m: float) -> list[int]:
    """Plan a random walk without U-turns that returns home and re-drives its first metres.

    Args:
        town: the town.
        rng: random stream of the query run.
        length_m: the route is at least this long.
        overlap_m: how much of its beginning the route drives again at its end.

    Returns:
        Crossing ids in driving order.
    """
    xy, adjacent = node_xy(town), neighbours(town)
    route = [int(rng.integers(len(xy)))]
    walked = 0.0

    def home_m(node: int) -> float:     # shortest street distance on a grid: Manhattan
        return float(np.abs(xy[node] - xy[route[0]]).sum())

    # the re-driven part is overlap_m, or the whole first leg if that is shorter
    while walked + home_m(route[-1]) + min(overlap_m, walked) < length_m or len(route) < 3:
        options = [n for n in adjacent[route[-1]] if len(route) < 2 or n != route[-2]]
        route.append(int(options[rng.integers(len(options))]))
        walked += float(np.abs(xy[route[-1]] - xy[route[-2]]).sum())
    first_leg = list(route)
    ny = len(town.street_y_m)
    while route[-1] != route[0]:        # home: along the east-west street first, then north-south
        (i, j), (gi, gj) = divmod(route[-1], ny), divmod(route[0], ny)
        if i != gi:
            i += 1 if gi > i else -1
        else:
            j += 1 if gj > j else -1
        route.append(i * ny + j)
    again = 0.0
    for a, b in zip(first_leg[:-1], first_leg[1:]):
        if again >= overlap_m:
            break
        route.append(b)
        again += float(np.abs(xy[b] - xy[a]).sum())
    return route


def route_length_m(town: Town, route: list[int]) -> float:
    """Centreline length of a route of crossing ids."""
    xy = node_xy(town)[route]
    return float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())


def sample_route(town: Town, route: list[int], count: int, spacing_m: float,
                 lane_m: float = LANE_M) -> Poses:
    """Poses every ``spacing_m`` along a route, in the lane ``lane_m`` right of the centreline.

    Headings (and the lane offset) blend over ``TURN_M`` either side of each crossing, so the
    camera turns smoothly instead of snapping at corners.

    Raises:
        DatasetError: the route is too short for ``count`` poses at this spacing.
    """
    xy = node_xy(town)[route]
    step = np.diff(xy, axis=0)
    lengths = np.linalg.norm(step, axis=1)
    keep = lengths > 1e-9
    xy0, step, lengths = xy[:-1][keep], step[keep], lengths[keep]
    ends = np.cumsum(lengths)
    at = (np.arange(count) + 0.5) * spacing_m
    if count and at[-1] > ends[-1]:
        raise DatasetError(f'route of {ends[-1]:.0f} m is too short for {count} poses every '
                           f'{spacing_m:.1f} m')
    k = np.minimum(np.searchsorted(ends, at, side='right'), len(lengths) - 1)
    along = at - (ends[k] - lengths[k])
    heading = np.arctan2(step[:, 1], step[:, 0])
    # blend weight towards the previous edge (w_prev) or the next edge (w_next), 0.5 at a crossing
    w_prev = np.where(k > 0, 0.5 * np.clip(1 - along / TURN_M, 0, 1), 0.0)
    w_next = np.where(k < len(lengths) - 1, 0.5 * np.clip(1 - (lengths[k] - along) / TURN_M, 0, 1),
                      0.0)
    prev, nxt = np.maximum(k - 1, 0), np.minimum(k + 1, len(lengths) - 1)
    yaw = (heading[k] + w_prev * _wrap(heading[prev] - heading[k])
           + w_next * _wrap(heading[nxt] - heading[k]))
    right = np.stack([np.sin(yaw), -np.cos(yaw)], axis=1)
    pos = xy0[k] + along[:, None] * step[k] / lengths[k][:, None] + lane_m * right
    return Poses(pos, _wrap(yaw))


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi
