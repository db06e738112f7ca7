"""aesvc_vpr: DINOv2 + AE-SVC / (SS)2D visual place recognition, with a ROS 2 node on top.

One subpackage per layer, imports running one way (docs/architecture.md). The core (everything
but ``aesvc_vpr.ros`` and ``aesvc_vpr.cli``) never imports rclpy. Names are resolved on first use,
so ``import aesvc_vpr`` stays fast and does not load torch until a model is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = '0.1.0'

_EXPORTS = {
    'BackboneConfig': 'config', 'HeadConfig': 'config', 'TrainConfig': 'config',
    'SearchConfig': 'config', 'MatchConfig': 'config', 'RecallConfig': 'config',
    'LoopClosureConfig': 'config',
    'VprError': 'errors', 'ConfigError': 'errors', 'WeightsError': 'errors',
    'ImageError': 'errors', 'HeadError': 'errors', 'DatasetError': 'errors',
    'MapError': 'errors', 'BagError': 'errors', 'BackboneError': 'errors',
    'SearchError': 'errors', 'LoopError': 'errors', 'EvaluationError': 'errors',
    'ReplayError': 'errors', 'NodeError': 'errors',
    'load_backbone': 'backbone', 'PatchGridBackbone': 'backbone',
    'Projector': 'head', 'train_head': 'head', 'fit_head': 'head',
    'MapDatabase': 'retrieval', 'build_map': 'retrieval', 'PrefixIndex': 'index',
    'Localizer': 'retrieval', 'Localization': 'retrieval', 'Match': 'retrieval',
    'Encoder': 'retrieval',
    'load_dataset': 'data', 'GeoImageSet': 'data',
    'evaluate_map': 'evaluation', 'recall_at_n': 'index', 'positives_within': 'index',
    'LoopClosureDetector': 'loop',
    'make_town': 'data', 'message_to_rgb': 'images', 'l2_prefix': 'index',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines a public name the first time it is used."""
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
    globals()[name] = value
    return value
