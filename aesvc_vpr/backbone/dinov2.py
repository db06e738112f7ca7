"""DinoV2Backbone: a timm DINOv2 ViT plus the pre-processing and pooling that make it a descriptor.

Pre-processing: RGB uint8 (H, W, 3) -> resize to ``input_size`` squared (cv2 INTER_AREA when
shrinking, INTER_LINEAR when enlarging; the aspect ratio is not kept) -> [0, 1] -> ImageNet mean
and std -> (N, 3, S, S) float32.

Position embeddings. DINOv2 was trained with a 37 x 37 grid (518 px). For another input size the
patch part of the table is resampled ONCE, when the model is built, with this rule:

    torch.nn.functional.interpolate(grid, size=(S // 14, S // 14), mode='bicubic',
                                    align_corners=False, antialias=False)

in float32; the class token's entry is kept as it is. This is what transformers' ``Dinov2Model``
does. It is not timm's default (antialias=True), not transformers'
``Dinov2WithRegistersModel`` (antialias=True), and not Meta's hub code (a scale factor of
(g + 0.1) / 37 instead of a target size); those differ from it by small amounts, and the tests
pin this rule. The graph then has static shapes, which ONNX export needs.

Descriptors (float32, not normalised; the head decides):
    cls      the final-norm class token, (N, C)
    gem      GeM over the final-norm patch tokens (registers excluded), clamped at 1e-6, (N, C)
    cls+gem  both concatenated, (N, 2C)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch import nn

from aesvc_vpr.backbone.calibration import CalibrationSet
from aesvc_vpr.backbone.pixels import resize_rgb
from aesvc_vpr.backbone.runtime.runners import make_runner
from aesvc_vpr.backbone.weights import Dinov2Weights
from aesvc_vpr.common.fileio import sha256_bytes
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import BackboneError, WeightsError
from aesvc_vpr.images.rgb import as_rgb_uint8

log = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# (v / 255 - mean) / std as one multiply-add per channel, (3, 1, 1) for (3, S, S) planes
_PIXEL_SCALE = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32).reshape(3, 1, 1)
_PIXEL_OFFSET = (-IMAGENET_MEAN / IMAGENET_STD).astype(np.float32).reshape(3, 1, 1)
POS_EMBED_RULE = 'bicubic-size-noantialias'   # part of the fingerprint: another rule, other output
GEM_EPS = 1e-6


def resample_pos_embed(pos_embed: torch.Tensor, grid: int, num_prefix: int) -> torch.Tensor:
    """Resample a square position-embedding table to ``grid`` x ``grid`` by the module's rule.

    Args:
        pos_embed: (1, num_prefix + G * G, C) table of a G x G grid.
        grid: target side in patches (input_size // patch_size).
        num_prefix: leading non-grid entries kept unchanged (1 for the class token, 0 for timm's
            register models, whose table covers the patches only).

    Returns:
        (1, num_prefix + grid * grid, C), same dtype.
    """
    from timm.layers import resample_abs_pos_embed
    return resample_abs_pos_embed(pos_embed, [grid, grid], num_prefix_tokens=num_prefix,
                                  interpolation='bicubic', antialias=False, align_corners=False)


class DescriptorNet(nn.Module):
    """A timm ViT plus pooling: normalised pixels (B, 3, S, S) -> descriptor (B, D) float32."""

    def __init__(self, vit: nn.Module, descriptor: str, gem_p: float) -> None:
        super().__init__()
        self.vit = vit
        self.descriptor = descriptor
        self.gem_p = float(gem_p)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Run the ViT and pool its final-norm tokens (pooling in float32, also under autocast)."""
        tokens = self.vit.forward_features(pixels).float()
        cls = tokens[:, 0]
        if self.descriptor == 'cls':
            return cls
        # (B, 1 + R + P, C) -> (B, P, C): drop the class and register tokens
        patches = tokens[:, self.vit.num_prefix_tokens:]
        gem = patches.clamp(min=GEM_EPS).pow(self.gem_p).mean(dim=1).pow(1.0 / self.gem_p)
        return gem if self.descriptor == 'gem' else torch.cat([cls, gem], dim=1)


def build_net(weights: Dinov2Weights, cfg: BackboneConfig) -> DescriptorNet:
    """Build the timm model for ``cfg.input_size`` and load the weights into it (eval mode, cpu).

    Raises:
        WeightsError: the tensors do not fit the architecture (names or shapes).
    """
    import timm
    arch = weights.arch
    if cfg.input_size % arch.patch_size:
        raise BackboneError(f'backbone.input_size {cfg.input_size} is not a multiple of the patch '
                            f'size {arch.patch_size}')
    entry, kwargs = arch.timm_kwargs(cfg.input_size)
    vit = timm.create_model(entry, **kwargs)
    state = dict(weights.state_dict)
    num_prefix = 0 if arch.reg_tokens else 1
    state['pos_embed'] = resample_pos_embed(state['pos_embed'], cfg.input_size // arch.patch_size,
                                            num_prefix)
    _check_shapes(vit.state_dict(), state, weights)
    vit.load_state_dict(state, strict=True)
    return DescriptorNet(vit, cfg.descriptor, cfg.gem_p).eval()


class DinoV2Backbone:
    """DINOv2 through timm, run by the configured runtime; implements ``embedder.Backbone``.

    ``fingerprint`` covers the weights and every setting that changes the output (input size,
    descriptor, GeM power, position-embedding rule), so a map built at 322 px is not silently
    searched with 224 px queries. The runtime is left out on purpose: its modes approximate the
    same function, and a map built in fp32 serves an int8 node.
    """

    def __init__(self, cfg: BackboneConfig, weights: Dinov2Weights,
                 calibration: CalibrationSet | None = None) -> None:
        """Build the model and its runner (``calibration``: openvino-int8's default images).

        Raises:
            WeightsError: the weights do not fit; BackboneError: unusable device or size.
        """
        self.cfg = cfg
        self.name = cfg.model_name
        self.device = _check_device(cfg)
        self.weights_fingerprint = weights.fingerprint
        settings = (f'{weights.fingerprint}:{cfg.input_size}:{cfg.descriptor}:{cfg.gem_p}:'
                    f'{POS_EMBED_RULE}')
        self.fingerprint = sha256_bytes(settings.encode())
        net = build_net(weights, cfg)
        self.dim = weights.arch.embed_dim * (2 if cfg.descriptor == 'cls+gem' else 1)
        export_key = f'{weights.fingerprint[:16]}-{cfg.input_size}-{cfg.descriptor}'
        if cfg.descriptor != 'cls':
            export_key += f'-p{cfg.gem_p:g}'
        self.runner = make_runner(net, cfg, self.device, export_key, weights.files,
                                  self.preprocess, calibration)
        log.info('backbone %s: %d-d %s at %d px, runtime %s on %s', self.name, self.dim,
                 cfg.descriptor, cfg.input_size, cfg.runtime, self.device)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize and normalise images.

        Args:
            images: (H, W, 3) uint8 RGB (grayscale converted), any sizes.

        Returns:
            (N, 3, S, S) float32, ImageNet-normalised.

        Raises:
            ImageError: an image is not uint8, zero-sized or of an unusable shape.
        """
        side = self.cfg.input_size
        out = np.empty((len(images), 3, side, side), np.float32)
        for i, image in enumerate(images):
            rgb = resize_rgb(as_rgb_uint8(image), side, side)
            # (S, S, 3) uint8 -> (3, S, S) float32, normalised per channel in place (half the
            # time of four whole-array passes; equal to 1e-6)
            plane = out[i]
            plane[...] = rgb.transpose(2, 0, 1)
            plane *= _PIXEL_SCALE
            plane += _PIXEL_OFFSET
        return out

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed images in batches of ``cfg.batch_size``.

        Returns:
            (N, dim) float32, not normalised.
        """
        out = np.empty((len(images), self.dim), np.float32)
        step = self.cfg.batch_size
        for start in range(0, len(images), step):
            out[start:start + step] = self.runner(self.preprocess(images[start:start + step]))
        return out


def _check_device(cfg: BackboneConfig) -> str:
    try:
        device = torch.device(cfg.device)
    except RuntimeError as err:
        raise BackboneError(
            f'backbone.device {cfg.device!r} is not a torch device ({err})') from err
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise BackboneError('backbone.device is cuda but torch sees no CUDA device; use cpu')
    if device.type != 'cpu' and cfg.runtime.startswith('onnx'):
        raise BackboneError(f'backbone.runtime {cfg.runtime} runs on the cpu only; '
                            'set backbone.device to cpu or use a torch runtime')
    return str(device)


def _check_shapes(model_state: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                  weights: Dinov2Weights) -> None:
    missing = sorted(set(model_state) - set(state))
    unexpected = sorted(set(state) - set(model_state))
    wrong = [f'{k} {tuple(state[k].shape)} != {tuple(v.shape)}' for k, v in model_state.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        where = weights.files[0] if weights.files else 'weights'
        raise WeightsError(
            f'{where}: tensors do not fit {weights.arch.describe()}: missing {missing[:4]}, '
            f'unexpected {unexpected[:4]}, wrong shapes {wrong[:4]}')
