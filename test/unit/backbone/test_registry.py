"""load_backbone: names, aliases, 'auto' with and without weights, and refusals."""

from __future__ import annotations

import logging

import dinov2_tiny
from dinov2_tiny import images
import numpy as np
import pytest
import torch

from aesvc_vpr.backbone import registry
from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.dinov2_archs import MODELS
from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.backbone.registry import load_backbone
from aesvc_vpr.backbone.weights import random_weights
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import BackboneError, WeightsError

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture

SMALL = 'vit_small_patch14_dinov2'


@pytest.fixture(scope='module')
def vits14_file(tmp_path_factory):
    """Save a random full-size ViT-S/14 in Meta's layout (timm's keys plus mask_token)."""
    state = dict(random_weights(MODELS[SMALL]).state_dict)
    state['mask_token'] = torch.zeros(1, 384)
    path = tmp_path_factory.mktemp('vits14') / 'dinov2_vits14_pretrain.pth'
    torch.save(state, path)
    return path


def install_in_torch_hub(tmp_path, source) -> None:
    target = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / source.name
    target.parent.mkdir(parents=True)
    target.symlink_to(source)


def test_patchgrid_by_name() -> None:
    assert isinstance(load_backbone(BackboneConfig(model_name='patchgrid')), PatchGridBackbone)


def test_auto_without_weights_falls_back_with_one_warning_line(caplog, monkeypatch) -> None:
    monkeypatch.setattr(registry, '_FALLBACK_WARNED', [])    # as in a fresh process
    with caplog.at_level(logging.INFO, logger='aesvc_vpr.backbone.registry'):
        bb = load_backbone(BackboneConfig(model_name='auto'))
        again = load_backbone(BackboneConfig(model_name='auto'))   # a second configure
    assert isinstance(bb, PatchGridBackbone) and bb.name == again.name == 'patchgrid'
    lines = [r for r in caplog.records if 'no DINOv2 weights' in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO]
    text = lines[0].getMessage()
    assert '\n' not in text and 'dinov2_vits14_pretrain.pth' in text and 'docs/' in text


def test_auto_with_weights_in_the_torch_hub_cache(tmp_path, vits14_file) -> None:
    install_in_torch_hub(tmp_path, vits14_file)
    bb = load_backbone(BackboneConfig(model_name='auto'))
    assert isinstance(bb, DinoV2Backbone)
    assert (bb.name, bb.dim, bb.device) == (SMALL, 384, 'cpu')
    out = bb.embed(images(2))
    assert out.shape == (2, 384) and np.isfinite(out).all()


def test_alias_is_stored_under_the_timm_name(tmp_path, vits14_file) -> None:
    bb = load_backbone(BackboneConfig(model_name='dinov2_vits14', weights=str(vits14_file),
                                      descriptor='cls+gem'))
    assert (bb.name, bb.dim) == (SMALL, 768)


def test_weights_of_another_model_are_refused(vits14_file) -> None:
    with pytest.raises(WeightsError, match='vit_base_patch14_dinov2 needs width 768'):
        load_backbone(BackboneConfig(model_name='vit_base_patch14_dinov2',
                                     weights=str(vits14_file)))


def test_auto_never_falls_back_over_a_broken_file(tmp_path) -> None:
    broken = tmp_path / 'dinov2_vits14_pretrain.pth'
    broken.write_bytes(b'not a checkpoint')
    install_in_torch_hub(tmp_path, broken)
    with pytest.raises(WeightsError, match='corrupt'):
        load_backbone(BackboneConfig(model_name='auto'))


def test_named_model_without_weights_says_how_to_get_them() -> None:
    with pytest.raises(WeightsError, match='huggingface-cli download facebook/dinov2-base'):
        load_backbone(BackboneConfig(model_name='dinov2_vitb14'))


def test_unknown_model_name() -> None:
    with pytest.raises(BackboneError, match='not a known model'):
        load_backbone(BackboneConfig(model_name='resnet50'))
