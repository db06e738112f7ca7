"""ROS image messages -> (H, W, 3) RGB uint8: the one converter the node and bag replay share.

Works on anything with the fields of ``sensor_msgs/Image`` (height, width, encoding,
is_bigendian, step, data) or ``sensor_msgs/CompressedImage`` (format, data): rclpy messages and
rosbags-deserialised messages alike. Colour conversion is rosbags-image's (compressed data is
decoded with the same OpenCV call it makes). This module checks the message first, so malformed
input fails fast with an ImageError that says what is wrong, instead of a numpy or OpenCV error
or a huge allocation.

16-bit encodings (mono16, rgb16, bayer_*16, ...) are scaled linearly over the full range, as
rosbags-image does: ``v8 = floor(v16 * 255 / 65535)``. A camera that fills only 10 or 12 of the
16 bits therefore gives a dark image; such drivers usually offer mono8 or rgb8 as well.
"""

from __future__ import annotations

from dataclasses import dataclass
import sys
from typing import Any

import cv2
import numpy as np
from rosbags.image import image_to_cvimage
from rosbags.image import ImageError as RosbagsImageError
from rosbags.image.image import Format, to_cvtype

from aesvc_vpr.config import ImageConfig
from aesvc_vpr.errors import ImageError
from aesvc_vpr.images.decode import check_max_pixels, check_min_pixels, checked_shape
from aesvc_vpr.images.decode import is_compressed_image
from aesvc_vpr.images.rgb import as_rgb_uint8

DEFAULT_MAX_PIXELS = ImageConfig().max_pixels
DEFAULT_MIN_PIXELS = ImageConfig().min_pixels
_PLANAR_YUV = ('nv12', 'nv21')
# OpenCV decodes to 1, 3 or 4 channels: channel count -> the rosbags-image source encoding.
_DECODED_ENCODING = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}


@dataclass(frozen=True)
class _RawImage:
    """The fields rosbags-image reads from an Image, with rows already unpadded."""

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    data: np.ndarray


def message_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
                   min_pixels: int = DEFAULT_MIN_PIXELS) -> np.ndarray:
    """Convert an Image or CompressedImage message to RGB, under the images' decode policy.

    Args:
        msg: a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (rclpy or rosbags).
        max_pixels: larger images are refused before anything is allocated.
        min_pixels: smaller images are refused (``ImageConfig``, as for image files).

    Returns:
        (H, W, 3) uint8 RGB, C-contiguous, never a view of the message's buffer.

    Raises:
        ImageError: unknown or non-camera encoding, zero size, step/data size mismatch,
            oversize or undersize image, or compressed data that is not a complete, decodable
            JPEG or PNG; ``cause`` says which.
    """
    if hasattr(msg, 'format'):
        rgb = _compressed_to_rgb(msg, max_pixels, min_pixels)
    elif hasattr(msg, 'encoding'):
        rgb = _raw_to_rgb(msg, max_pixels, min_pixels)
    else:
        raise ImageError(
            f'{type(msg).__name__} is neither a sensor_msgs Image nor CompressedImage',
            'not an image')
    return as_rgb_uint8(rgb)


def _buffer(msg: Any) -> np.ndarray:
    try:
        return np.frombuffer(msg.data, np.uint8)
    except (TypeError, ValueError) as err:
        raise ImageError(f'image data is not a byte buffer ({type(msg.data).__name__})',
                         'bad data') from err


def _raw_to_rgb(msg: Any, max_pixels: int, min_pixels: int) -> np.ndarray:
    encoding = str(msg.encoding)
    try:
        depth_bits, fmt, _, channels = to_cvtype(encoding)
    except RosbagsImageError as err:
        raise ImageError(f'unknown image encoding {encoding!r}', 'unknown encoding') from err
    if fmt == Format.GENERIC or encoding in _PLANAR_YUV:
        # 32FC1 depth or 16UC1 may hold NaN or metric values; planar YUV has 1.5 rows per row
        raise ImageError(
            f'encoding {encoding!r} is not supported (depth, raw matrix or planar YUV data); '
            'publish mono8, mono16, rgb8, bgr8, rgba8, bgra8, Bayer, yuv422 or a compressed '
            'image', 'unsupported encoding')
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_max_pixels(height, width, max_pixels, encoding)
    row_bytes = width * channels * depth_bits // 8
    if step < row_bytes:
        raise ImageError(f'{encoding} step {step} is less than width {width} x pixel size '
                         f'({row_bytes} bytes per row)', 'bad step or size')
    data = _buffer(msg)
    if data.size != step * height:
        raise ImageError(f'{encoding} data has {data.size} bytes, but step {step} x height '
                         f'{height} = {step * height}', 'bad step or size')
    check_min_pixels(height, width, min_pixels, encoding)
    # (height * step,) -> (height, row_bytes): drop row padding
    rows = data.reshape(height, step)[:, :row_bytes]
    big_endian = bool(msg.is_bigendian)
    if big_endian != (sys.byteorder == 'big') and depth_bits > 8:
        rows = rows.copy()  # rosbags-image < 0.10 byteswaps in place; never touch the message
    raw = _RawImage(height, width, encoding, big_endian, np.ascontiguousarray(rows).ravel())
    try:
        rgb = image_to_cvimage(raw, 'rgb8')
    except (RosbagsImageError, cv2.error) as err:
        raise ImageError(f'cannot convert {encoding} to rgb8: {err}', 'corrupt') from err
    return rgb.copy() if np.may_share_memory(rgb, data) else rgb


def _compressed_to_rgb(msg: Any, max_pixels: int, min_pixels: int) -> np.ndarray:
    data = _buffer(msg)
    what = f'{msg.format!r} compressed image'
    if not is_compressed_image(data):
        raise ImageError(f'compressed image {msg.format!r} ({data.size} bytes) is neither JPEG '
                         'nor PNG (no JPEG or PNG signature)', 'corrupt')
    checked_shape(data, what, max_pixels, min_pixels)
    # The decode rosbags-image does, minus its assert: a corrupt image must be an ImageError.
    try:
        decoded = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR)
    except cv2.error as err:
        raise ImageError(f'corrupt {what}: {err}', 'corrupt') from err
    channels = 0 if decoded is None else (1 if decoded.ndim == 2 else decoded.shape[2])
    if channels not in _DECODED_ENCODING or decoded.dtype != np.uint8:
        raise ImageError(f'corrupt {what}: OpenCV could not decode its {data.size} bytes',
                         'corrupt')
    # the same rosbags-image colour conversion as raw images take
    encoding = _DECODED_ENCODING[channels]
    return image_to_cvimage(_RawImage(decoded.shape[0], decoded.shape[1], encoding,
                                      sys.byteorder == 'big', decoded.ravel()), 'rgb8')
