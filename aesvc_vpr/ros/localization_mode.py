"""vpr_node's localisation mode: each frame is matched against a geotagged map.

Outputs (all stamped with the query image) are published by ``Outputs``: ``~/place_match``,
``~/candidates``, ``~/candidate_scores`` and ``~/markers``. The map's places are re-sent as
markers every few seconds, so RViz windows opened later get them.
"""

from __future__ import annotations

import time

from builtin_interfaces.msg import Time
import numpy as np
from rclpy.lifecycle import LifecycleNode

from aesvc_vpr.common.stamps import time_ns
from aesvc_vpr.errors import ConfigError
from aesvc_vpr.retrieval.localizer import Localizer
from aesvc_vpr.ros.outputs import Outputs
from aesvc_vpr.ros.params import NodeSettings

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
        self._outputs = Outputs(node, self.localizer.mapdb, s.node.map_frame)
        self._last_places_s = 0.0

    def summary(self) -> str:
        """Backbone, device, map and prefix in one line."""
        loc = self.localizer
        return (f'backbone {loc.backbone.name} on {loc.backbone.device} '
                f'({self.settings.backbone.runtime}), map {loc.mapdb.root} with '
                f'{loc.mapdb.count} places, prefix {loc.prefix_dim}, mode localization')

    def activate(self) -> None:
        """Send the map's places once the publishers are enabled."""
        self._outputs.publish_places()
        self._last_places_s = time.monotonic()

    def deactivate(self) -> None:
        """Nothing of its own to stop: the node owns the camera input."""

    def handle(self, rgb: np.ndarray, stamp: Time) -> None:
        """Localise one frame and publish its matches."""
        localizer = self.localizer
        match_cfg = localizer.match_cfg
        loc = localizer.localize(rgb, time_ns(stamp))
        self._outputs.publish(loc, stamp, match_cfg)

    def reconfigure(self, settings: NodeSettings) -> None:
        """Switch the searched prefix or funnel (re-indexes) and the match settings."""
        if settings.search != self.localizer.search_cfg:
            self.localizer.set_search(settings.search)
        self.localizer.match_cfg = settings.match
        self.settings = settings

    def tick(self) -> None:
        """Re-send the place markers every PLACES_PERIOD_S."""
        now = time.monotonic()
        if now - self._last_places_s >= PLACES_PERIOD_S:
            self._outputs.publish_places()
            self._last_places_s = now

    def diagnostics(self) -> dict[str, object]:
        """Map size, prefix, backbone, device and runtime."""
        loc = self.localizer
        return {'map_size': loc.mapdb.count, 'prefix_dim': loc.prefix_dim,
                'index': loc.index_type,
                'backbone': loc.backbone.name, 'device': loc.backbone.device,
                'runtime': self.settings.backbone.runtime}

    def release(self) -> None:
        """Destroy the publishers."""
        self._outputs.destroy()
