"""The interface every image encoder offers, so map, head, node and evaluation need not care."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Backbone(Protocol):
    """An image encoder: RGB images in, one raw (unnormalised) float32 vector per image out."""

    name: str          # model name stored in maps and head files, e.g. 'vit_small_patch14_dinov2'
    dim: int           # output dimension
    fingerprint: str   # sha256 hex of the weights (or of the settings, for weights-free encoders)
    device: str

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed a batch.

        Args:
            images: (H, W, 3) uint8 RGB arrays of any sizes (grayscale is converted).

        Returns:
            (N, dim) float32, not normalised.
        """
        ...
