"""Mode 2, ROS-free half: run the live node, and turn what it published into scorable frames.

``aesvc_vpr.ros.bag_player`` publishes the bag's images to the node and records its
``~/ranked_candidates`` (one stamped message per image: positions, yaw, scores and map rows);
this module starts the node as a subprocess (``NodeProcess``) and turns the answers into rows of
map indices (``frames_from_outputs``; answers without row ids are mapped back by position), so
that both modes are scored by the same code
(``aesvc_vpr.replay_report``). A published image without an answer is a dropped frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
from typing import Sequence

import numpy as np

from aesvc_vpr.bags.queries import QueryPlan
from aesvc_vpr.errors import ReplayError
from aesvc_vpr.replay.frames import ReplayFrames
from aesvc_vpr.replay.offline import empty_frames

log = logging.getLogger(__name__)

NODE_NAME = 'vpr_node'
LATENCY_KIND = 'end to end: image published -> candidates received (ROS + node)'


@dataclass(frozen=True)
class PlayConfig:
    """How the bag is played to the node."""

    rate: float = 1.0                 # multiple of real (bag) time
    namespace: str = '/vpr_replay'    # node namespace; inputs <ns>/image and <ns>/image/compressed
    node_name: str = NODE_NAME
    startup_timeout_s: float = 120.0  # model and map loading in the node
    settle_s: float = 5.0             # how long to wait for answers after the last image
    image_reliability: str = 'reliable'

    def __post_init__(self) -> None:
        """Refuse a non-positive rate or timeout; make the namespace absolute."""
        if self.rate <= 0:
            raise ReplayError(f'--rate must be > 0, got {self.rate}')
        if self.startup_timeout_s <= 0 or self.settle_s < 0:
            raise ReplayError('startup timeout must be > 0 and settle time >= 0')
        if self.namespace and not self.namespace.startswith('/'):
            object.__setattr__(self, 'namespace', '/' + self.namespace)

    def topic(self, name: str) -> str:
        """Resolve a name in the node's namespace ('image') or a private one ('~/candidates')."""
        if name.startswith('~/'):
            return f'{self.namespace.rstrip("/")}/{self.node_name}/{name[2:]}'
        return f'{self.namespace.rstrip("/")}/{name}'


@dataclass
class NodeOutput:
    """One answer of the node: the candidates of the image with stamp ``stamp_ns``."""

    stamp_ns: int
    xy: np.ndarray           # (K, 2) float64 positions in the node's map frame, rank order
    yaw: np.ndarray          # (K,) float64 rad from the pose orientations
    scores: np.ndarray       # (K,) float32
    received_s: float        # time.monotonic() at arrival
    rows: np.ndarray | None = None   # (K,) map row ids, when the node sent them


@dataclass
class PlayLog:
    """What was published and what came back."""

    sent_s: dict[int, float] = field(default_factory=dict)       # stamp_ns -> monotonic time
    outputs: dict[int, NodeOutput] = field(default_factory=dict)  # stamp_ns -> answer
    # UTM of the node's map-frame origin, from its latched ~/map_origin (0, 0: raw UTM)
    origin_utm: tuple[float, float] = (0.0, 0.0)
    # stamp_ns -> the node's ~/place_match (one place; the sequence filter's estimate)
    estimates: dict[int, NodeOutput] = field(default_factory=dict)

    @property
    def dropped(self) -> list[int]:
        """Stamps that were published and never answered, in publishing order."""
        return [s for s in self.sent_s if s not in self.outputs]


class NodeProcess:
    """``aesvc_vpr.ros.node`` in a subprocess, with the given parameters; a context manager.

    Its stdout and stderr go to a temporary log file whose tail is shown if it dies.
    """

    def __init__(self, cfg: PlayConfig, params: dict[str, object],
                 overrides: Sequence[str] = ()) -> None:
        """Prepare the command.

        Args:
            cfg: namespace and node name.
            params: typed parameters (strings are quoted so YAML keeps them strings).
            overrides: 'name:=value' items passed through as typed, after ``params``.

        Raises:
            ReplayError: an override without ':='.
        """
        bad = [item for item in overrides if ':=' not in item or item.startswith(':=')]
        if bad:
            raise ReplayError(f'node parameter overrides must be name:=value, got {bad}')
        self.cfg = cfg
        self.params = params
        self.overrides = list(overrides)
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix='vpr_node_', suffix='.log', delete=False)

    def command(self) -> list[str]:
        """Build the command line: the node's module, run by this python."""
        args = [sys.executable, '-m', 'aesvc_vpr.ros.node', '--ros-args',
                '-r', f'__node:={self.cfg.node_name}']
        if self.cfg.namespace:
            args += ['-r', f'__ns:={self.cfg.namespace}']
        for name, value in self.params.items():
            args += ['-p', f'{name}:={_param_text(value)}']
        for item in self.overrides:
            args += ['-p', item]
        return args

    def __enter__(self) -> NodeProcess:
        """Start the node (it loads its model and map in the background)."""
        log.info('starting the node: %s', ' '.join(self.command()))
        self._proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                      env=os.environ.copy(), start_new_session=True)
        return self

    def check_alive(self) -> None:
        """Raise if the node has exited.

        Raises:
            ReplayError: with the exit code and the end of the node's log.
        """
        if self._proc is not None and self._proc.poll() is not None:
            raise ReplayError(f'the node exited with code {self._proc.returncode} before the '
                              f'replay finished; its log ({self._log.name}) ends with:\n'
                              f'{self.log_tail()}')

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines the node printed."""
        self._log.flush()
        with open(self._log.name, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        """Stop the node (SIGINT, then SIGKILL after 10 s); keep its log if something failed."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)     # the node shuts down cleanly on Ctrl-C
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()
        if not exc or exc[0] is None:
            os.unlink(self._log.name)


def frames_from_outputs(plan: QueryPlan, play: PlayLog, map_utm: np.ndarray,
                        map_yaw: np.ndarray, top_k: int,
                        estimates: bool = False) -> ReplayFrames:
    """Turn the node's answers for the images with ground truth into rows of map indices.

    The node's map row ids are used when the answer has them. Otherwise a candidate pose, with
    the node's map origin (``play.origin_utm``) added back, is mapped to the map row at exactly
    that position (the node publishes the map's float64 UTM minus an integer origin, which is
    exact both ways); several rows at one position (e.g. several headings
    of one Pittsburgh place) are told apart by yaw, then by rank.

    With ``estimates`` (the node runs the sequence filter), the frames score its
    ``~/place_match`` as the top-1 (no place beyond it: R@N > 1 equals R@1; no estimate, as
    one the node's gate withheld, is a miss), and ``raw_indices`` keeps the frames' own rankings.
    The estimate's score is its cosine in the frame's ranking, or the k-th cosine (an upper
    bound) when it lies outside the published top-k.

    Raises:
        ReplayError: a candidate that is no map place (the node runs another map).
    """
    frames = empty_frames(plan, top_k, LATENCY_KIND)
    rows_at = _rows_by_position(map_utm)
    if estimates:
        frames.raw_indices = frames.indices.copy()
    for i, stamp in enumerate(frames.stamps_ns.tolist()):
        out = play.outputs.get(stamp)
        if out is None:
            continue
        k = min(top_k, len(out.scores))
        rows = (out.rows.tolist() if out.rows is not None
                else _map_rows(out, play.origin_utm, rows_at, map_yaw))
        frames.answered[i] = True
        frames.latency_s[i] = out.received_s - play.sent_s[stamp]
        if estimates:
            frames.raw_indices[i, :k] = rows[:k]
            estimate = play.estimates.get(stamp)
            if estimate is not None:
                row = _map_rows(estimate, play.origin_utm, rows_at, map_yaw)[0]
                frames.indices[i, 0] = row
                # ~/place_match carries no cosine: the frame's own, or its k-th (a bound)
                frames.scores[i, 0] = out.scores[rows.index(row)] if row in rows[:k] \
                    else out.scores[k - 1]
            continue
        frames.indices[i, :k] = rows[:k]
        frames.scores[i, :k] = out.scores[:k]
    return frames


def _rows_by_position(map_utm: np.ndarray) -> dict[tuple[float, float], list[int]]:
    rows: dict[tuple[float, float], list[int]] = {}
    for row, (x, y) in enumerate(map_utm.tolist()):
        rows.setdefault((x, y), []).append(row)
    return rows


def _map_rows(out: NodeOutput, origin_utm: tuple[float, float], rows_at: dict,
              map_yaw: np.ndarray) -> list[int]:
    taken: set[int] = set()
    result = []
    utm = out.xy + np.asarray(origin_utm, np.float64)
    for (x, y), yaw in zip(utm.tolist(), out.yaw.tolist()):
        rows = rows_at.get((x, y))
        if not rows:
            raise ReplayError(f'the node answered stamp {out.stamp_ns} with a place at ({x:.3f}, '
                              f'{y:.3f}) that is not in this map: is it running another map?')
        free = [r for r in rows if r not in taken] or rows
        # unknown map yaw (NaN) is published as 0
        row = min(free, key=lambda r: _angle_gap(0.0 if math.isnan(map_yaw[r]) else map_yaw[r],
                                                 yaw))
        taken.add(row)
        result.append(row)
    return result


def _angle_gap(a: float, b: float) -> float:
    return abs(math.remainder(a - b, 2 * math.pi))


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        # YAML would read '64' as a number and '' as null: quote strings
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def node_params(map_path: str, head_path: str, backbone: str, prefix_dim: int,
                top_k: int, filter_mode: str = 'off') -> dict[str, object]:
    """Return the node parameters a replay sets (the rest keep the node's defaults).

    The filter mode is always set: a replay scores either the frames' own matches (off) or the
    sequence filter's estimates (hmm), whatever the node's default.
    """
    return {'map_path': map_path, 'head_path': head_path, 'backbone.model_name': backbone,
            'search.prefix_dim': prefix_dim, 'match.top_k': top_k, 'filter.mode': filter_mode}
