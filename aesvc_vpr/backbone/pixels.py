"""Images to network input: the one resize rule, and an ONNX model's configurable pre-processing.

Resize (DINOv2 and ONNX models alike): cv2 INTER_AREA when the image shrinks (an average over
each output pixel's footprint, close to PIL's anti-aliased bilinear), INTER_LINEAR when it grows.
``crop`` scales the shorter side to the target and cuts the centre, keeping the aspect ratio;
``stretch`` scales both sides independently.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from aesvc_vpr.config import OnnxConfig
from aesvc_vpr.images.rgb import as_rgb_uint8


def resize_rgb(rgb: np.ndarray, height: int, width: int, crop: bool = False) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (height, width, 3), stretched or centre-cropped.

    Args:
        rgb: (H, W, 3) uint8.
        height: output rows in pixels.
        width: output columns in pixels.
        crop: keep the aspect ratio: scale the image to cover the output, then cut the centre.
    """
    if crop:
        factor = max(height / rgb.shape[0], width / rgb.shape[1])
        cover_h = max(height, round(rgb.shape[0] * factor))
        cover_w = max(width, round(rgb.shape[1] * factor))
        covered = resize_rgb(rgb, cover_h, cover_w)
        top, left = (cover_h - height) // 2, (cover_w - width) // 2
        return np.ascontiguousarray(covered[top:top + height, left:left + width])
    if rgb.shape[:2] == (height, width):
        return rgb
    shrink = rgb.shape[0] * rgb.shape[1] > height * width
    return cv2.resize(rgb, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class OnnxPixels:
    """RGB uint8 images -> an ONNX model's input batch, as ``backbone.onnx`` describes it."""

    def __init__(self, cfg: OnnxConfig, height: int, width: int, dtype: np.dtype) -> None:
        """Fix the input size and element type (the model's); values follow ``cfg``.

        Args:
            cfg: resize rule, channel order, layout and value scaling.
            height: input rows in pixels.
            width: input columns in pixels.
            dtype: the model input's element type: float32/float16 get scaled values, uint8
                and int8 the raw (rounded, clipped) ones.
        """
        self.cfg = cfg
        self.height, self.width = height, width
        self.dtype = np.dtype(dtype)
        scale, offset, mean, std = cfg.scaling()
        order = [2, 1, 0] if cfg.channels == 'bgr' else [0, 1, 2]
        self.order = order
        std_arr = np.asarray(std, np.float32)[order]
        # x = (p * scale + offset - mean) / std, folded into one multiply-add per channel
        self.gain = (np.float32(scale) / std_arr).astype(np.float32)
        self.bias = ((np.float32(offset) - np.asarray(mean, np.float32)[order]) / std_arr).astype(
            np.float32)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return (N, 3, H, W) for nchw or (N, H, W, 3) for nhwc, in the model's element type.

        Raises:
            ImageError: an image is not uint8, zero-sized or of an unusable shape.
        """
        out = np.empty((len(images), self.height, self.width, 3), np.float32)
        for i, image in enumerate(images):
            rgb = resize_rgb(as_rgb_uint8(image), self.height, self.width,
                             crop=self.cfg.resize == 'crop')
            out[i] = rgb[:, :, self.order] * self.gain + self.bias
        if self.dtype.kind in 'iu':
            info = np.iinfo(self.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        if self.cfg.layout == 'nchw':
            out = out.transpose(0, 3, 1, 2)   # (N, H, W, 3) -> (N, 3, H, W)
        return np.ascontiguousarray(out, dtype=self.dtype)
