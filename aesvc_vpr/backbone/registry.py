"""``load_backbone``: a BackboneConfig in, a ready ``Backbone`` out, chosen from a registry.

Each family registers a loader under the model names it answers to: ``patchgrid`` (weights-free),
every official DINOv2 timm name (hub aliases such as ``dinov2_vits14`` resolve to them), and
``auto``: DINOv2 ViT-S/14 when its weights are on this machine, else ``patchgrid`` (with a
warning, so nobody mistakes its numbers for DINOv2's), and ``onnx`` (any ONNX image embedder).
A new family is one ``register_backbone``; a name ending in ':' answers to every model name
with that prefix (``onnx:model.onnx``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from aesvc_vpr.backbone.calibration import CalibrationSet
from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.dinov2_archs import hub_file, MODELS, name_of, resolve_model_name
from aesvc_vpr.backbone.onnx_backbone import model_path as onnx_model_path
from aesvc_vpr.backbone.onnx_backbone import NAME as ONNX, OnnxBackbone
from aesvc_vpr.backbone.patchgrid import NAME as PATCHGRID, PatchGridBackbone
from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.backbone.weights import find_weights, load_weights
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import WeightsError

log = logging.getLogger(__name__)
_FALLBACK_WARNED: list[bool] = []   # the auto -> patchgrid warning was given in this process

AUTO_MODEL = 'vit_small_patch14_dinov2'
Loader = Callable[[BackboneConfig, 'CalibrationSet | None'], Backbone]
_LOADERS: dict[str, Loader] = {}


def register_backbone(name: str, loader: Loader) -> None:
    """Make ``backbone.model_name: name`` build its encoder with ``loader(cfg, calibration)``."""
    _LOADERS[name] = loader


def backbone_names() -> list[str]:
    """Return every registered model name, sorted."""
    return sorted(_LOADERS)


def load_backbone(cfg: BackboneConfig, calibration: CalibrationSet | None = None) -> Backbone:
    """Build the encoder ``cfg.model_name`` asks for.

    Args:
        cfg: model_name is a registered name or a DINOv2 hub alias ('dinov2_vits14'); aliases
            are stored under their timm name.
        calibration: images for openvino-int8 when ``cfg.calibration_images`` is '' (the
            retrieval layer passes the synthetic town views); unused by other runtimes.

    Raises:
        BackboneError: unknown model name or unusable setting.
        WeightsError: DINOv2 weights missing, corrupt or of another model ('auto' falls back
            only when none are found, never over a broken file).
    """
    prefix = cfg.model_name.partition(':')[0] + ':'
    loader = _LOADERS.get(cfg.model_name) or (_LOADERS.get(prefix) if ':' in cfg.model_name
                                              else None)
    if loader is None:
        name = resolve_model_name(cfg.model_name)   # a hub alias, or BackboneError naming all
        cfg = dataclasses.replace(cfg, model_name=name)
        loader = _LOADERS[name]
    return loader(cfg, calibration)


def _load_patchgrid(cfg: BackboneConfig, calibration: CalibrationSet | None) -> Backbone:
    return PatchGridBackbone(cfg)


def _load_dinov2(cfg: BackboneConfig, calibration: CalibrationSet | None) -> Backbone:
    weights = load_weights(find_weights(cfg.model_name, cfg.weights, cfg.allow_download),
                           MODELS[cfg.model_name])
    return DinoV2Backbone(cfg, weights, calibration)


def _load_onnx(cfg: BackboneConfig, calibration: CalibrationSet | None) -> Backbone:
    path, pin = onnx_model_path(cfg)
    return OnnxBackbone(cfg, path, pin, calibration)


def _load_auto(cfg: BackboneConfig, calibration: CalibrationSet | None) -> Backbone:
    try:
        path = find_weights(AUTO_MODEL, cfg.weights, cfg.allow_download)
    except WeightsError as err:
        if cfg.weights:
            raise
        # one warning per process; a node re-configured says it in /diagnostics at WARN level
        level = logging.INFO if _FALLBACK_WARNED else logging.WARNING
        _FALLBACK_WARNED.append(True)
        log.log(level, 'backbone auto: no DINOv2 weights found (%s in $TORCH_HOME/hub/'
                'checkpoints or a Hugging Face folder), so the weights-free %s baseline runs; '
                'see docs/backbone.md', hub_file(AUTO_MODEL), PATCHGRID)
        log.debug('backbone auto: %s', err)
        return PatchGridBackbone(dataclasses.replace(cfg, model_name=PATCHGRID))
    weights = load_weights(path)   # a named file may hold any DINOv2 size
    name = name_of(weights.arch)
    if name is None:
        raise WeightsError(f'{path}: not an official DINOv2 model ({weights.arch.describe()})'
                           '; name the model in backbone.model_name')
    return DinoV2Backbone(dataclasses.replace(cfg, model_name=name), weights, calibration)


register_backbone(PATCHGRID, _load_patchgrid)
register_backbone('auto', _load_auto)
register_backbone(ONNX, _load_onnx)
register_backbone(ONNX + ':', _load_onnx)
for _name in MODELS:
    register_backbone(_name, _load_dinov2)
