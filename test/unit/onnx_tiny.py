"""Tiny ONNX image models exported from torch here, for the ONNX backbone tests (no downloads)."""

from __future__ import annotations

from pathlib import Path
import warnings

import numpy as np
import torch
from torch import nn

SIDE = 32


class TinyNet(nn.Module):
    """Two strided convolutions: (B, 3, 32, 32) -> a (B, 16, 8, 8) map, or its mean (B, 16)."""

    def __init__(self, output: str = 'vector', nhwc: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.output = output
        self.nhwc = nhwc

    def forward(self, pixels: torch.Tensor):  # noqa: ANN201 (one or two tensors)
        if self.nhwc:
            pixels = pixels.permute(0, 3, 1, 2)   # (B, H, W, 3) -> (B, 3, H, W)
        pixels = pixels.float()                   # an integer input becomes a Cast
        fmap = self.body(pixels)
        vector = fmap.mean(dim=(2, 3))
        if self.output == 'map':
            return fmap
        if self.output == 'both':
            return fmap, nn.functional.normalize(vector, dim=1)
        return vector


def export(net: TinyNet, path: Path, dynamic_batch: bool = True,
           dtype: torch.dtype = torch.float32) -> Path:
    """Export ``net`` (opset 17): input 'pixels', outputs 'out' or 'feature_map' + 'desc'."""
    shape = (1, SIDE, SIDE, 3) if net.nhwc else (1, 3, SIDE, SIDE)
    outputs = ['feature_map', 'desc'] if net.output == 'both' else ['out']
    axes = {name: {0: 'batch'} for name in ['pixels', *outputs]} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(net.eval(), (torch.zeros(shape, dtype=dtype),), str(path),
                          dynamo=False, opset_version=17, input_names=['pixels'],
                          output_names=outputs, dynamic_axes=axes)
    return path


def images(count: int, seed: int = 0, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Random smooth RGB uint8 images of ``size`` (H, W)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3)).astype(np.float32)
        image = torch.nn.functional.interpolate(
            torch.from_numpy(coarse).permute(2, 0, 1)[None], size=size, mode='bilinear')
        out.append(image[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return out
