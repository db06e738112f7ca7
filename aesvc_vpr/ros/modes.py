"""What the node does with frames: one mode object per ``mode`` parameter, behind one interface.

The node (``node.py``) owns the lifecycle, the camera subscription, the worker thread, the
parameters and /diagnostics; everything that depends on the mode lives in the mode object, so
the node holds no mode branches. A mode is built at configure and released at cleanup.
"""

from __future__ import annotations

from typing import Protocol

from builtin_interfaces.msg import Time
import numpy as np
from rclpy.lifecycle import LifecycleNode

from aesvc_vpr.ros.params import NodeSettings


class NodeMode(Protocol):
    """A configured mode: built with ``(node, settings)``, loading whatever it needs."""

    def summary(self) -> str:
        """One line for the 'configured' log: what was loaded."""
        ...

    def activate(self) -> None:
        """Start the mode's own inputs and send what late subscribers need (executor thread)."""
        ...

    def deactivate(self) -> None:
        """Stop the mode's own inputs; what was loaded stays (executor thread)."""
        ...

    def handle(self, rgb: np.ndarray, stamp: Time) -> None:
        """Process one decoded frame and publish the results (worker thread)."""
        ...

    def reconfigure(self, settings: NodeSettings) -> None:
        """Apply run-time parameter changes; raise a VprError to refuse them (executor)."""
        ...

    def tick(self) -> None:
        """Periodic work of an active node, e.g. re-sending map markers (executor)."""
        ...

    def diagnostics(self) -> dict[str, object]:
        """Mode-specific /diagnostics values."""
        ...

    def release(self) -> None:
        """Drop publishers and loaded state (cleanup, shutdown)."""
        ...


def make_mode(node: LifecycleNode, settings: NodeSettings) -> NodeMode:
    """Build the mode ``settings.node.mode`` names (imports only the chosen one).

    Raises:
        VprError: a part the mode needs does not load or fit.
    """
    if settings.node.mode == 'loop_closure':
        from aesvc_vpr.ros.loop_mode import LoopClosureMode
        return LoopClosureMode(node, settings)
    from aesvc_vpr.ros.localization_mode import LocalizationMode
    return LocalizationMode(node, settings)
