"""DinoV2Backbone against transformers' DINOv2 with identical weights, and its input handling."""

from __future__ import annotations

import dinov2_tiny
from dinov2_tiny import (images, make_tiny, NATIVE, reference_tokens, resample_reference, Tiny,
                         tiny_arch, WIDTH)
import numpy as np
import pytest
import torch

from aesvc_vpr.backbone.dinov2 import DinoV2Backbone, resample_pos_embed
from aesvc_vpr.backbone.weights import load_weights
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import BackboneError, ImageError

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture
tiny = dinov2_tiny.tiny                         # each tiny model, per module


def backbone(tiny: Tiny, layout: str = 'hf', **cfg) -> DinoV2Backbone:
    path = tiny.hf_dir if layout == 'hf' else tiny.meta_path
    return DinoV2Backbone(BackboneConfig(model_name='tiny_dinov2', **cfg),
                          load_weights(path, tiny_arch(tiny.registers)))


@pytest.mark.parametrize('layout', ['hf', 'meta'])
@pytest.mark.parametrize('size', [NATIVE, 224, 322])
def test_cls_matches_transformers(tiny, layout, size) -> None:
    bb = backbone(tiny, layout, input_size=size)
    batch = images(3)
    expected = reference_tokens(tiny.model, torch.from_numpy(bb.preprocess(batch)))[:, 0]
    out = bb.embed(batch)
    assert out.shape == (3, WIDTH) and out.dtype == np.float32
    assert np.abs(out - expected.numpy()).max() < 1e-4
    assert np.abs(out[0] - out[1]).max() > 1e-2, 'different images must give different CLS'


@pytest.mark.parametrize('layout', ['hf', 'meta'])
def test_swiglu_family_matches_transformers(tmp_path, layout) -> None:
    # ViT-g's MLP shape (packed SwiGLU, Meta's w12/w3 keys), tiny
    tiny = make_tiny(tmp_path, registers=True, swiglu=True)
    weights = load_weights(tiny.hf_dir if layout == 'hf' else tiny.meta_path,
                           tiny_arch(True, swiglu=True))
    bb = DinoV2Backbone(BackboneConfig(model_name='tiny_dinov2', input_size=224), weights)
    batch = images(2)
    expected = reference_tokens(tiny.model, torch.from_numpy(bb.preprocess(batch)))[:, 0]
    assert weights.arch.swiglu and tiny.model.config.use_swiglu_ffn
    assert np.abs(bb.embed(batch) - expected.numpy()).max() < 1e-4


def test_gem_and_cls_gem_match_reference_pooling(tiny) -> None:
    batch = images(2)
    gem = backbone(tiny, input_size=224, descriptor='gem', gem_p=3.0)
    both = backbone(tiny, input_size=224, descriptor='cls+gem', gem_p=3.0)
    tokens = reference_tokens(tiny.model, torch.from_numpy(gem.preprocess(batch)))
    patches = tokens[:, 1 + (4 if tiny.registers else 0):]   # drop class and register tokens
    assert patches.shape[1] == (224 // 14) ** 2
    expected = patches.clamp(min=1e-6).pow(3).mean(1).pow(1 / 3).numpy()
    out_gem, out_both = gem.embed(batch), both.embed(batch)
    assert (gem.dim, both.dim) == (WIDTH, 2 * WIDTH)
    assert out_gem.shape == (2, WIDTH) and out_both.shape == (2, 2 * WIDTH)
    assert np.abs(out_gem - expected).max() < 1e-4
    np.testing.assert_allclose(out_both[:, WIDTH:], out_gem, atol=1e-5)
    np.testing.assert_allclose(out_both[:, :WIDTH], tokens[:, 0].numpy(), atol=1e-4)


def test_pos_embed_rule_is_bicubic_without_antialias(tiny) -> None:
    bb = backbone(tiny, input_size=224)
    table = tiny.model.state_dict()['embeddings.position_embeddings']
    ours = resample_reference(table, 16)
    antialiased = resample_reference(table, 16, antialias=True)
    assert (ours - antialiased).abs().max() > 1e-3, 'the two rules must be distinguishable'
    vit = bb.runner.net.vit
    if tiny.registers:
        # timm's register models fold the class entry into cls_token; pos_embed is patches only
        np.testing.assert_allclose(vit.pos_embed.detach(), ours[:, 1:], atol=1e-6)
    else:
        np.testing.assert_allclose(vit.pos_embed.detach(), ours, atol=1e-6)
    same = resample_pos_embed(table, 37, 1)
    assert torch.equal(same, table), 'the native grid is left untouched'


def test_transformers_own_resampling_agrees_only_for_the_plain_model(tiny) -> None:
    # Dinov2Model resamples by our rule; Dinov2WithRegistersModel uses antialias=True
    bb = backbone(tiny, input_size=322)
    batch = images(2)
    with torch.no_grad():
        native = tiny.model(pixel_values=torch.from_numpy(bb.preprocess(batch)))
    diff = np.abs(bb.embed(batch) - native.last_hidden_state[:, 0].numpy()).max()
    assert diff < 1e-4 if not tiny.registers else diff > 1e-4


def test_batching_gives_the_same_rows(tiny) -> None:
    batch = images(5, seed=3)
    bb = backbone(tiny, input_size=224, batch_size=2)
    together = bb.embed(batch)
    alone = np.concatenate([bb.embed([image]) for image in batch])
    assert together.shape == (5, WIDTH)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert bb.embed([]).shape == (0, WIDTH)


def test_preprocess_resizes_and_normalises(tiny) -> None:
    bb = backbone(tiny, input_size=224)
    mean_rgb = np.full((50, 70, 3), [124, 116, 104], np.uint8)   # ImageNet mean * 255
    white = np.full((300, 400, 3), 255, np.uint8)
    pixels = bb.preprocess([mean_rgb, white])
    assert pixels.shape == (2, 3, 224, 224) and pixels.dtype == np.float32
    assert np.abs(pixels[0]).max() < 0.01
    np.testing.assert_allclose(pixels[1, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406]))
                               / np.array([0.229, 0.224, 0.225]), atol=1e-5)


def test_grayscale_is_converted_not_rejected(tiny) -> None:
    bb = backbone(tiny, input_size=224)
    gray = images(1)[0][:, :, 0]
    out = bb.embed([gray, gray[:, :, None]])
    expected = bb.embed([np.repeat(gray[:, :, None], 3, axis=2)])
    np.testing.assert_allclose(out, np.repeat(expected, 2, axis=0), atol=1e-6)


@pytest.mark.parametrize('bad, message', [
    (np.zeros((40, 40, 3), np.float32), 'uint8'),
    (np.zeros((0, 40, 3), np.uint8), 'zero-sized'),
    (np.zeros((40, 40, 2), np.uint8), 'shape'),
    ([[1, 2], [3, 4]], 'numpy array'),
])
def test_bad_images_raise_image_error(tiny, bad, message) -> None:
    bb = backbone(tiny, input_size=224)
    with pytest.raises(ImageError, match=message):
        bb.embed([images(1)[0], bad])


def test_fingerprint_covers_output_settings_but_not_runtime(tiny) -> None:
    base = backbone(tiny, input_size=224)
    same_output = backbone(tiny, input_size=224, runtime='torch-bf16', batch_size=1)
    assert base.fingerprint == same_output.fingerprint
    for change in ({'input_size': 322}, {'descriptor': 'gem'}):
        other = backbone(tiny, **{'input_size': 224, **change})
        assert other.fingerprint != base.fingerprint
    assert len(base.fingerprint) == 64 and base.name == 'tiny_dinov2'


@pytest.mark.parametrize('device, runtime, message', [
    ('nonsense', 'torch-fp32', 'not a torch device'),
    ('meta', 'onnx-fp32', 'cpu only'),
])
def test_unusable_device_is_a_backbone_error(tiny, device, runtime, message) -> None:
    with pytest.raises(BackboneError, match=message):
        backbone(tiny, input_size=224, device=device, runtime=runtime)
