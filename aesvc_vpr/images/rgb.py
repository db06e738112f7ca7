"""Image arrays in, validated RGB uint8 out: the one gate every image passes before a backbone."""

from __future__ import annotations

import numpy as np

from aesvc_vpr.errors import ImageError


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate an image and return it as a contiguous (H, W, 3) uint8 RGB array.

    Grayscale (H, W) or (H, W, 1) is converted, not rejected; a fourth channel is taken as alpha
    and dropped.

    Raises:
        ImageError: not a numpy array, not uint8, zero-sized, or of an unusable shape.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f'expected a numpy array, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ImageError(f'expected a uint8 image, got dtype {image.dtype}')
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f'expected an (H, W), (H, W, 3) or (H, W, 4) image, '
                         f'got shape {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f'zero-sized image {image.shape}')
    return np.ascontiguousarray(image[:, :, :3])
