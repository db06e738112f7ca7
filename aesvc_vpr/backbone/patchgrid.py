"""A weights-free image descriptor: the baseline that runs where no DINOv2 weights exist.

It is not DINOv2 and not a learned model. It concatenates two classic place-recognition cues:
a patch-normalised grayscale thumbnail (as in SeqSLAM), which is robust to global brightness
change, and a coarse grid of gradient-orientation histograms (HOG-like), which keeps facade
layout. With the same interface as the DINOv2 backbone it lets the demo and CI exercise the map,
head, node and evaluation code unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import cv2
import numpy as np

from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.images.rgb import as_rgb_uint8

NAME = 'patchgrid'
THUMB = 16          # thumbnail side: 256 values
PATCH = 4           # patch-normalisation block side
GRID = 4            # gradient histogram cells per side
BINS = 8            # unsigned orientation bins per cell: GRID*GRID*BINS = 128 values
WORK_SIDE = 96      # images are resized to this square before gradients are taken


class PatchGridBackbone:
    """Patch-normalised thumbnail + gradient-orientation grid, 384-d, no weights."""

    name = NAME
    dim = THUMB * THUMB + GRID * GRID * BINS
    device = 'cpu'

    def __init__(self, cfg: BackboneConfig | None = None) -> None:
        """Keep the config for interface parity; the fingerprint names every setting."""
        self.cfg = cfg or BackboneConfig(model_name=NAME)
        settings = f'{NAME}-v1:{THUMB}:{PATCH}:{GRID}:{BINS}:{WORK_SIDE}'
        self.fingerprint = hashlib.sha256(settings.encode()).hexdigest()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed images; returns (N, 384) float32 (not normalised)."""
        out = np.empty((len(images), self.dim), np.float32)
        for i, image in enumerate(images):
            out[i] = _describe(as_rgb_uint8(image))
        return out


def _describe(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    work = cv2.resize(gray, (WORK_SIDE, WORK_SIDE), interpolation=cv2.INTER_AREA)
    work = work.astype(np.float32)
    thumb = cv2.resize(work, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    # (16, 16) -> (4, 4, 4, 4): normalise each 4x4 block to zero mean, unit variance
    blocks = thumb.reshape(THUMB // PATCH, PATCH, THUMB // PATCH, PATCH).transpose(0, 2, 1, 3)
    blocks = blocks - blocks.mean(axis=(2, 3), keepdims=True)
    blocks = blocks / (blocks.std(axis=(2, 3), keepdims=True) + 1e-3)
    gx = cv2.Sobel(work, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(work, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)                  # unsigned orientation in [0, pi)
    bins = np.minimum((angle / np.pi * BINS).astype(np.int64), BINS - 1)
    cell = WORK_SIDE // GRID
    rows = np.arange(WORK_SIDE) // cell
    flat = (rows[:, None] * GRID + rows[None, :]) * BINS + bins   # cell * BINS + bin
    hist = np.bincount(flat.ravel(), weights=magnitude.ravel(), minlength=GRID * GRID * BINS)
    hist = hist.reshape(GRID * GRID, BINS)
    hist /= np.linalg.norm(hist, axis=1, keepdims=True) + 1e-6
    # weight the two halves so each contributes about equally to a cosine
    thumb_part = blocks.ravel() / np.sqrt(THUMB * THUMB)
    hog_part = hist.ravel() / np.sqrt(GRID * GRID)
    return np.concatenate([thumb_part, hog_part]).astype(np.float32)
