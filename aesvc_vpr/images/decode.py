"""The one decode policy for compressed images, from files and from messages alike.

Before any pixel is decoded: the size is read from the header and checked against the
configured minimum and maximum pixel count, and the file must be complete (a JPEG ends its scan
with an end-of-image marker, a PNG ends with IEND). OpenCV decodes a truncated JPEG without an
error, filling the missing rows with grey; such an image would be embedded as a different
place, so it is refused here and listed by the caller.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from aesvc_vpr.config import ImageConfig
from aesvc_vpr.errors import ImageError

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND'
_JPEG_MAGIC = b'\xff\xd8'
_JPEG_EOI = b'\xff\xd9'
# JPEG start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field (RSTn, TEM).
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
_JPEG_SOS = 0xDA


def check_max_pixels(height: int, width: int, max_pixels: int, what: str = 'image') -> None:
    """Refuse a zero-size image or one above ``max_pixels``, before its data is looked at.

    Raises:
        ImageError: with cause 'zero size' or 'too large'.
    """
    if height <= 0 or width <= 0:
        raise ImageError(f'{what}: zero-size image: {width}x{height}', 'zero size')
    pixels = height * width
    if pixels > max_pixels:
        raise ImageError(
            f'{what}: image {width}x{height} has {pixels / 1e6:.1f} MP, more than the limit of '
            f'{max_pixels / 1e6:.1f} MP; downscale it or raise the maximum pixel count '
            '(max_image_pixels, --max-image-pixels)', 'too large')


def check_min_pixels(height: int, width: int, min_pixels: int, what: str = 'image') -> None:
    """Refuse an image of fewer than ``min_pixels`` pixels.

    Raises:
        ImageError: with cause 'too small'.
    """
    pixels = height * width
    if pixels < min_pixels:
        raise ImageError(
            f'{what}: image {width}x{height} has {pixels} pixels, fewer than the minimum of '
            f'{min_pixels}; it holds no recognisable place (--min-image-pixels)',
            'too small')


def compressed_shape(data: np.ndarray, what: str) -> tuple[int, int]:
    """Read (height, width) from an image header without decoding the pixels.

    PNG and JPEG headers are parsed here; other formats (BMP, WebP, PPM, ...) are read lazily
    by Pillow, which parses only the header.

    Raises:
        ImageError: no readable header (cause 'corrupt').
    """
    head = data[:32].tobytes()
    if head.startswith(_PNG_MAGIC):
        if len(head) < 24 or head[12:16] != b'IHDR':
            raise ImageError(f'{what}: corrupt PNG without an IHDR header', 'corrupt')
        return int.from_bytes(head[20:24], 'big'), int.from_bytes(head[16:20], 'big')
    if head.startswith(_JPEG_MAGIC):
        shape, _ = _jpeg_walk(data)
        if shape is None:
            raise ImageError(f'{what}: corrupt JPEG: no JPEG frame header found', 'corrupt')
        return shape
    return _other_shape(data, what)


def check_complete(data: np.ndarray, what: str) -> None:
    """Refuse a PNG without its IEND chunk or a JPEG whose scan has no end-of-image marker.

    Raises:
        ImageError: with cause 'truncated'.
    """
    head = data[:8].tobytes()
    if head.startswith(_PNG_MAGIC) and data[-12:].tobytes()[4:8] != _PNG_IEND:
        raise ImageError(f'{what}: truncated PNG (no IEND chunk at the end; {data.size} bytes)',
                         'truncated')
    if head.startswith(_JPEG_MAGIC):
        _, scan = _jpeg_walk(data)
        # entropy-coded data stuffs every 0xFF with 0x00, so FFD9 after the scan is the EOI
        if data[scan:].tobytes().find(_JPEG_EOI) < 0:
            raise ImageError(f'{what}: truncated JPEG (the scan data has no end-of-image '
                             f'marker; {data.size} bytes)', 'truncated')


def checked_shape(data: np.ndarray, what: str, max_pixels: int,
                  min_pixels: int) -> tuple[int, int]:
    """Apply the whole policy to compressed bytes: size from the header, pixel limits, complete.

    Returns:
        (height, width) from the header.

    Raises:
        ImageError: see ``compressed_shape``, ``check_max_pixels``, ``check_min_pixels`` and
            ``check_complete``.
    """
    height, width = compressed_shape(data, what)
    check_max_pixels(height, width, max_pixels, what)
    check_min_pixels(height, width, min_pixels, what)
    check_complete(data, what)
    return height, width


def decode_file_bytes(data: np.ndarray, what: str, cfg: ImageConfig) -> np.ndarray:
    """Check and decode the bytes of an image file into (H, W, 3) uint8 BGR, as OpenCV reads.

    Raises:
        ImageError: see ``checked_shape``; or undecodable data (cause 'corrupt').
    """
    checked_shape(data, what, cfg.max_pixels, cfg.min_pixels)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise ImageError(f'{what}: cannot decode the image ({err})', 'corrupt') from err
    if bgr is None:
        raise ImageError(f'{what}: cannot read or decode the image', 'corrupt')
    return bgr


def is_compressed_image(data: np.ndarray) -> bool:
    """Whether the bytes start with a PNG or JPEG signature."""
    head = data[:8].tobytes()
    return head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC)


def _jpeg_walk(data: np.ndarray) -> tuple[tuple[int, int] | None, int]:
    """Walk the JPEG markers up to the first scan: ((height, width) or None, scan offset)."""
    pos, end = 2, data.size
    shape = None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = int(data[pos + 1])
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        length = int(data[pos + 2]) << 8 | int(data[pos + 3])
        if marker in _JPEG_SOF and length >= 7 and pos + 9 <= end and shape is None:
            shape = (int(data[pos + 5]) << 8 | int(data[pos + 6]),
                     int(data[pos + 7]) << 8 | int(data[pos + 8]))
        if marker == _JPEG_SOS or length < 2:
            break
        pos += 2 + length
    return shape, pos


def _other_shape(data: np.ndarray, what: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:   # reads the header only
            width, height = image.size
    except Image.DecompressionBombError as err:
        raise ImageError(f'{what}: {err}', 'too large') from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f'{what}: not a readable image ({err})', 'corrupt') from err
    return height, width
