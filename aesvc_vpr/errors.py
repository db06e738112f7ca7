"""Exception types, so callers can tell our failures from bugs and show them as one clear line.

One type per layer: each subpackage raises its own (``aesvc_vpr.backbone`` a BackboneError,
``aesvc_vpr.retrieval`` a MapError, ...), and ConfigError is raised where settings are read and
checked (the config dataclasses, CLI flags, node parameters). The CLI prints any VprError as
``error: ...``; the node logs it in one line.
"""

from __future__ import annotations


class VprError(Exception):
    """Base of every error that aesvc_vpr raises on purpose (bad input, files, config)."""


class ConfigError(VprError, ValueError):
    """A configuration value is out of range or inconsistent (config dataclasses, CLI, node)."""


class ImageError(VprError, ValueError):
    """An image or image message cannot be turned into RGB uint8 (``aesvc_vpr.images``).

    ``cause`` is a short category ('truncated', 'too small', 'unsupported encoding', ...) so a
    caller can count refusals by cause instead of logging each one.
    """

    def __init__(self, message: str, cause: str = 'undecodable') -> None:
        super().__init__(message)
        self.cause = cause


class SearchError(VprError):
    """A prefix, index or ranking request does not fit the embeddings (``aesvc_vpr.index``)."""


class BackboneError(VprError):
    """An image encoder cannot be built or run as configured (``aesvc_vpr.backbone``)."""


class WeightsError(BackboneError):
    """Backbone weights are missing, corrupt or of another architecture."""


class HeadError(VprError):
    """A projection head cannot be trained, read or applied (``aesvc_vpr.head``)."""


class BagError(VprError):
    """A rosbag cannot be read or written, or lacks the requested topic (``aesvc_vpr.bags``)."""


class DatasetError(VprError):
    """A dataset cannot be read or made; the message names the file and field (``data``)."""


class MapError(VprError):
    """A map is missing or corrupt, or does not fit the backbone or head (``retrieval``)."""


class LoopError(VprError):
    """The loop-closure detector or its keyframe store was misused (``aesvc_vpr.loop``)."""


class EvaluationError(VprError):
    """An evaluation cannot be run or written (``aesvc_vpr.evaluation``)."""


class ReplayError(VprError):
    """A recording cannot be replayed or its report written (``aesvc_vpr.replay``)."""


class NodeError(VprError):
    """The ROS node cannot start or serve as configured (``aesvc_vpr.ros``)."""
