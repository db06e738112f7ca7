"""vpr_node's localisation mode: each frame is matched against a geotagged map.

Outputs (all stamped with the query image) are published by ``Outputs``: ``~/place_match``,
``~/candidates``, ``~/candidate_scores`` and ``~/markers``. The map's places are re-sent as
markers every few seconds, so RViz windows opened later get them. With ``filter.mode: hmm``
``~/place_match`` carries the sequence filter's estimate (``retrieval.tracking``), driven by
odometry on ``odom`` and pose priors on ``initialpose`` (``filter_inputs.py``), while
``~/candidates`` keeps the frame's own ranking.

Run-time changes never stall the executor or split a frame between two settings: a frame reads
``match_cfg`` once (one attribute, swapped whole) and searches and publishes with it; a new
``search.prefix_dim`` is checked in the parameter callback, then re-indexed on a background
thread and swapped in with one assignment, so frames keep using the old index meanwhile.
"""

from __future__ import annotations

import threading
import time

from builtin_interfaces.msg import Time
import numpy as np
from rclpy.lifecycle import LifecycleNode

from aesvc_vpr.common.stamps import time_ns
from aesvc_vpr.config import MatchConfig, SearchConfig
from aesvc_vpr.errors import ConfigError, MapError
from aesvc_vpr.loop.rerank import GeometricReranker
from aesvc_vpr.retrieval.calibration import (Calibration, load_calibration, match_features,
                                             spread_covariance)
from aesvc_vpr.retrieval.localizer import Localization, Localizer
from aesvc_vpr.retrieval.map_index import index_figures
from aesvc_vpr.retrieval.place_filter import BeliefSummary
from aesvc_vpr.retrieval.tracking import SequenceLocalizer
from aesvc_vpr.ros.filter_inputs import FilterInputs
from aesvc_vpr.ros.frames import MapFrame, OriginPublisher
from aesvc_vpr.ros.outputs import Outputs
from aesvc_vpr.ros.params import NodeSettings
from aesvc_vpr.ros.worker import LatestFrameWorker

PLACES_PERIOD_S = 5.0        # re-send the map's place markers for RViz windows opened later


class LocalizationMode:
    """The ``Localizer`` core and its publishers."""

    def __init__(self, node: LifecycleNode, settings: NodeSettings) -> None:
        """Load backbone, head and map (slow).

        Raises:
            ConfigError: no map_path; BackboneError, HeadError, MapError: a part does not load.
        """
        s = settings
        if not s.node.map_path:
            raise ConfigError('map_path is empty: set it to a map directory built by '
                              '`aesvc-vpr build-map`')
        self.localizer = Localizer.from_config(s.backbone, s.node.head_path, s.node.map_path,
                                               s.search, s.match)
        self.settings = settings
        self.match_cfg = s.match
        self.prefix_error = ''               # the last failed re-index, for /diagnostics
        self._node = node
        mapdb = self.localizer.mapdb
        self.frame = MapFrame(s.frame, s.node.map_frame, mapdb.origin_utm)
        self._origin = OriginPublisher(node, self.frame)
        self._origin.publish()
        self._outputs = Outputs(node, mapdb, self.frame)
        self._last_places_s = 0.0
        # newest requested prefix wins; its own thread keeps the executor free while indexing
        self._reindex = LatestFrameWorker(self._set_search, lambda: None, lambda: 0.0,
                                          name='vpr-reindex')
        self._reindex.start()
        self._lock = threading.Lock()     # worker thread (frames) vs executor (priors, params)
        self.tracker = SequenceLocalizer(self.localizer, s.filter)
        self._inputs = FilterInputs(node, self.tracker, self._lock, self.frame,
                                    self.localizer.mapdb.utm_zone)
        self._belief: BeliefSummary | None = None
        self._estimate_mass: float | None = None
        self._calibration, self._calibration_state = self._load_calibration(s)
        self._probability: float | None = None
        self._reranker: GeometricReranker | None = None

    def summary(self) -> str:
        """Backbone, device, map and prefix in one line."""
        loc = self.localizer
        return (f'backbone {loc.backbone.name} on {loc.backbone.device} '
                f'({self.settings.backbone.runtime}), map {loc.mapdb.root} with '
                f'{loc.mapdb.count} places, prefix {loc.prefix_dim}, mode localization, '
                f'positions in {self.frame.map_frame} ({self.frame.cfg.mode}: '
                f'{self.frame.cfg.utm_frame} + {self.frame.offset.tolist()})')

    @property
    def max_prefix_dim(self) -> tuple[int, str]:
        """The largest searchable prefix, and what sets it."""
        projector = self.localizer.projector
        if projector is not None:
            return projector.output_dim, f'output size of head {projector.path}'
        backbone = self.localizer.backbone
        return backbone.dim, f'no head, raw {backbone.name} embeddings'

    def activate(self) -> None:
        """Send the map's places once the publishers are enabled."""
        self._outputs.publish_places()
        self._last_places_s = time.monotonic()
        self._inputs.start()

    def deactivate(self) -> None:
        """Stop odometry and pose-prior input (the node owns the camera input)."""
        self._inputs.stop()

    def handle(self, rgb: np.ndarray, stamp: Time) -> None:
        """Localise one frame and publish its matches."""
        localizer = self.localizer
        match_cfg = self.match_cfg            # one set of settings for the whole frame
        frame_ns = time_ns(stamp)
        start = time.perf_counter()
        full = localizer.embed([rgb])[0]
        embed_s = time.perf_counter() - start
        odometer_m = self._inputs.odometer_at(frame_ns, self.tracker.cfg.odom_max_age_s)
        with self._lock:
            tracked = self.tracker.track(full, frame_ns, odometer_m, embed_s)
            min_belief = self.tracker.cfg.min_belief
            if tracked.belief is not None:
                self._belief = tracked.belief
                self._estimate_mass = tracked.estimate_mass
        estimate = tracked.estimate
        reranker = self._geometric(match_cfg.geometric_check)
        if reranker is not None:
            estimate = reranker.rerank(rgb, estimate)
        probability, xy_covariance = self._confidence(tracked.raw, estimate, match_cfg)
        self._outputs.publish(tracked.raw, stamp, match_cfg, estimate=estimate,
                              probability=probability, xy_covariance=xy_covariance,
                              estimate_mass=tracked.estimate_mass,
                              min_belief=min_belief)

    def reconfigure(self, settings: NodeSettings) -> None:
        """Check new search settings now, re-index in the background; swap the match settings."""
        search = settings.search
        if search != self.settings.search:
            self.localizer.check_search(search)   # refuses with HeadError / MapError
            self._reindex.submit(search)
        self.match_cfg = settings.match
        self.localizer.match_cfg = settings.match
        with self._lock:
            self.tracker.configure(settings.filter)
            if settings.filter.mode == 'off':
                self._belief, self._estimate_mass = None, None
        if (settings.search.prefix_dim, settings.match) != \
                (self.settings.search.prefix_dim, self.settings.match):
            self._calibration, self._calibration_state = self._load_calibration(settings)
        self.settings = settings

    def _set_search(self, search: SearchConfig) -> None:
        try:
            self.localizer.set_search(search)
            self.prefix_error = ''
        except Exception as err:  # noqa: BLE001 - keep the old index and say why
            self.prefix_error = (f'search.prefix_dim {search.prefix_dim}, shortlist '
                                 f'{search.shortlist_dim}: {type(err).__name__}: {err}')
            self._node.get_logger().error(f're-indexing failed, still searching prefix '
                                          f'{self.localizer.prefix_dim}: {self.prefix_error}')

    def tick(self) -> None:
        """Re-send the place markers every PLACES_PERIOD_S."""
        now = time.monotonic()
        if now - self._last_places_s >= PLACES_PERIOD_S:
            self._outputs.publish_places()
            self._last_places_s = now

    def diagnostics(self) -> dict[str, object]:
        """Map size, prefix, backbone, device and runtime."""
        loc = self.localizer
        values: dict[str, object] = {
            'map_size': loc.mapdb.count, 'prefix_dim': loc.prefix_dim, 'index': loc.index_type,
            'backbone': loc.backbone.name, 'device': loc.backbone.device,
            'runtime': self.settings.backbone.runtime,
            'prefix_dim_requested': self.settings.search.prefix_dim,
            'frame': f'{self.frame.map_frame} ({self.frame.cfg.mode})',
            'map_origin_utm': ' '.join(f'{v:.1f}' for v in self.frame.offset)}
        if self.prefix_error:
            values['prefix_error'] = self.prefix_error
        if loc.search_cfg.index_type == 'saved':
            values.update(index_figures(loc.mapdb, loc.search_cfg.shortlist_k))
        values.update(self._filter_diagnostics())
        return values

    def _filter_diagnostics(self) -> dict[str, object]:
        """Filter mode, belief peak and entropy (the frame last filtered) and input counters."""
        with self._lock:
            belief, mass = self._belief, self._estimate_mass
            values: dict[str, object] = {'filter_mode': self.tracker.cfg.mode,
                                         **self.tracker.diagnostics()}
        if belief is not None:
            values['filter_belief_peak'] = round(belief.peak, 4)
            values['filter_belief_entropy_nats'] = round(belief.entropy_nats, 3)
            values['filter_belief_support'] = belief.support
        if mass is not None:
            values['filter_estimate_mass'] = round(mass, 4)
        values.update(self._inputs.diagnostics())
        values['calibration'] = self._calibration_state
        reranker = self._reranker
        if reranker is not None:
            values['geometric_ms_last'] = round(1e3 * reranker.last_s, 2)
            values['geometric_map_images_unreadable'] = reranker.unreadable
        if self._probability is not None:
            values['place_probability'] = round(self._probability, 4)
        return values

    def _geometric(self, method: str) -> GeometricReranker | None:
        """Return the re-ranker of ``match.geometric_check`` (None: off), built on first use."""
        if method == 'off':
            return None
        if self._reranker is None or self._reranker.method != method:
            self._reranker = GeometricReranker(self.localizer.mapdb.paths, method)
        return self._reranker

    def _load_calibration(self, settings: NodeSettings) -> tuple[Calibration | None, str]:
        """Return the map's calibration for these settings, and its state for diagnostics."""
        try:
            calibration = load_calibration(self.localizer.mapdb, settings.search.prefix_dim,
                                           settings.match.top_k, settings.match.radius_m)
        except MapError as err:
            self._node.get_logger().warning(f'map calibration not used: {err}')
            return None, f'uncalibrated (refused: {err})'
        if calibration is None:
            return None, 'uncalibrated (map has none; see aesvc-vpr calibrate)'
        return calibration, f'calibrated (held-out ECE {calibration.held_out.get("ece", 0):.3f})'

    def _confidence(self, raw: Localization, published: Localization, match_cfg: MatchConfig
                    ) -> tuple[float | None, np.ndarray | None]:
        """Return the calibrated P(top-1 correct) and the covariance of the published place."""
        calibration = self._calibration
        if calibration is None or not raw.matches or not published.matches:
            return None, None
        positions = np.array([[m.easting, m.northing] for m in raw.matches])
        scores = np.array([m.score for m in raw.matches])
        probability = float(calibration.probability(
            match_features(scores, positions, match_cfg.radius_m))[0])
        self._probability = probability
        spread = np.array([[m.easting, m.northing] for m in published.matches])
        return probability, spread_covariance(np.array([m.score for m in published.matches]),
                                              spread, probability, match_cfg.radius_m,
                                              self.tracker.cfg.temperature)

    def release(self) -> None:
        """Finish a re-index in progress, then destroy the publishers and subscriptions."""
        self._reindex.stop()
        self._inputs.stop()
        self._outputs.destroy()
        self._origin.destroy()
