"""vpr_node's localisation mode: each frame is matched against a geotagged map.

Outputs (all stamped with the query image) are published by ``Outputs``: ``~/place_match``,
``~/candidates``, ``~/candidate_scores`` and ``~/markers``. The map's places are re-sent as
markers every few seconds, so RViz windows opened later get them.

Run-time changes never stall the executor or split a frame between two settings: a frame reads
``match_cfg`` once (one attribute, swapped whole) and searches and publishes with it; a new
``search.prefix_dim`` is checked in the parameter callback, then re-indexed on a background
thread and swapped in with one assignment, so frames keep using the old index meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from builtin_interfaces.msg import Time
import numpy as np
from rclpy.lifecycle import LifecycleNode

from aesvc_vpr.common.stamps import time_ns
from aesvc_vpr.errors import ConfigError
from aesvc_vpr.retrieval.localizer import Localizer
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
        self._outputs = Outputs(node, self.localizer.mapdb, s.node.map_frame)
        self._last_places_s = 0.0
        # newest requested prefix wins; its own thread keeps the executor free while indexing
        self._reindex = LatestFrameWorker(self._set_prefix, lambda: None, lambda: 0.0,
                                          name='vpr-reindex')
        self._reindex.start()

    def summary(self) -> str:
        """Backbone, device, map and prefix in one line."""
        loc = self.localizer
        return (f'backbone {loc.backbone.name} on {loc.backbone.device} '
                f'({self.settings.backbone.runtime}), map {loc.mapdb.root} with '
                f'{loc.mapdb.count} places, prefix {loc.prefix_dim}, mode localization')

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

    def deactivate(self) -> None:
        """Nothing of its own to stop: the node owns the camera input."""

    def handle(self, rgb: np.ndarray, stamp: Time) -> None:
        """Localise one frame and publish its matches."""
        match_cfg = self.match_cfg
        loc = self.localizer.localize(rgb, time_ns(stamp), match_cfg)
        self._outputs.publish(loc, stamp, match_cfg)

    def reconfigure(self, settings: NodeSettings) -> None:
        """Check a new prefix now and re-index in the background; swap the match settings."""
        dim = settings.search.prefix_dim
        if dim != self.settings.search.prefix_dim:
            self.localizer.encoder.check_prefix(dim)   # refuses with HeadError / MapError
            self._reindex.submit(dim)
        self.match_cfg = settings.match
        self.localizer.match_cfg = settings.match
        self.settings = settings

    def _set_prefix(self, dim: Any) -> None:
        try:
            self.localizer.set_prefix_dim(dim)
            self.prefix_error = ''
        except Exception as err:  # noqa: BLE001 - keep the old index and say why
            self.prefix_error = f'search.prefix_dim {dim}: {type(err).__name__}: {err}'
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
            'map_size': loc.mapdb.count, 'prefix_dim': loc.prefix_dim,
            'backbone': loc.backbone.name, 'device': loc.backbone.device,
            'runtime': self.settings.backbone.runtime,
            'prefix_dim_requested': self.settings.search.prefix_dim}
        if self.prefix_error:
            values['prefix_error'] = self.prefix_error
        return values

    def release(self) -> None:
        """Finish a re-index in progress and destroy the publishers."""
        self._reindex.stop()
        self._outputs.destroy()
