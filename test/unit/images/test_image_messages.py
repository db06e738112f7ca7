"""msg_image: every supported encoding, every refused input, and rclpy == rosbags messages."""

from __future__ import annotations

import sys

from image_samples import big_png, encode, smooth_rgb
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

from aesvc_vpr.common.stamps import stamp_ns
from aesvc_vpr.errors import ImageError
from aesvc_vpr.images.messages import message_to_rgb

TYPES = get_typestore(Stores.ROS2_KILTED)
Header = TYPES.types['std_msgs/msg/Header']
Time = TYPES.types['builtin_interfaces/msg/Time']
RbImage = TYPES.types['sensor_msgs/msg/Image']
RbCompressed = TYPES.types['sensor_msgs/msg/CompressedImage']
# Bayer pattern -> the RGB channel sampled at (row % 2, col % 2)
BAYER = {'rggb': ((0, 1), (1, 2)), 'bggr': ((2, 1), (1, 0)),
         'gbrg': ((1, 2), (0, 1)), 'grbg': ((1, 0), (2, 1))}


def header(sec: int = 7, nanosec: int = 5) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id='cam')


def raw_msg(pixels: np.ndarray, encoding: str, *, big_endian: bool = False,
            pad: int = 0, height: int | None = None, width: int | None = None,
            step: int | None = None) -> RbImage:
    """Build a rosbags Image of ``pixels`` (rows padded by ``pad`` bytes unless step is given)."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8) if pixels.size else pixels
    if big_endian:
        rows = pixels.byteswap().reshape(pixels.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.hstack([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)])
    data = np.ascontiguousarray(rows).ravel().view(np.uint8)
    return RbImage(header=header(), height=pixels.shape[0] if height is None else height,
                   width=pixels.shape[1] if width is None else width, encoding=encoding,
                   is_bigendian=int(big_endian),
                   step=(rows.shape[1] if rows.size else 0) if step is None else step, data=data)


def compressed_msg(data: bytes, fmt: str = 'jpeg') -> RbCompressed:
    return RbCompressed(header=header(), format=fmt, data=np.frombuffer(data, np.uint8))


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    mosaic = np.empty(rgb.shape[:2], rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, BAYER[pattern][dy][dx]]
    return mosaic


@pytest.mark.parametrize('encoding, order', [('rgb8', [0, 1, 2]), ('bgr8', [2, 1, 0])])
def test_three_channel_encodings(encoding: str, order: list[int]) -> None:
    rgb = smooth_rgb()
    out = message_to_rgb(raw_msg(np.ascontiguousarray(rgb[:, :, order]), encoding))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize('encoding, order', [('rgba8', [0, 1, 2]), ('bgra8', [2, 1, 0])])
def test_alpha_encodings_drop_alpha(encoding: str, order: list[int]) -> None:
    rgb = smooth_rgb()
    alpha = np.full(rgb.shape[:2] + (1,), 17, np.uint8)
    out = message_to_rgb(raw_msg(np.ascontiguousarray(np.dstack([rgb[:, :, order], alpha])),
                                 encoding))
    np.testing.assert_array_equal(out, rgb)


def test_mono8_becomes_grey_rgb() -> None:
    gray = smooth_rgb()[:, :, 0].copy()
    out = message_to_rgb(raw_msg(gray, 'mono8'))
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))


@pytest.mark.parametrize('big_endian', [False, True])
def test_mono16_scales_full_range_to_8_bit(big_endian: bool) -> None:
    gray16 = np.array([[0, 257, 65535, 1000]], np.uint16)
    out = message_to_rgb(raw_msg(gray16, 'mono16', big_endian=big_endian), min_pixels=1)
    # documented mapping: floor(v16 * 255 / 65535)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 3])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize('pattern', sorted(BAYER))
@pytest.mark.parametrize('bits', [8, 16])
def test_bayer_patterns_demosaic_to_the_right_colours(pattern: str, bits: int) -> None:
    rgb = smooth_rgb()
    mosaic = bayer_mosaic(rgb, pattern)
    if bits == 16:
        mosaic = mosaic.astype(np.uint16) * 257
    out = message_to_rgb(raw_msg(mosaic, f'bayer_{pattern}{bits}'))
    # a swapped pattern turns the red ramp into the blue one: errors of ~50, not ~2
    inner = (slice(2, -2), slice(2, -2))
    assert np.abs(out[inner].astype(int) - rgb[inner]).mean() < 4


def test_yuv422_grey() -> None:
    uyvy = np.full((4, 8 * 2), 128, np.uint8)  # U=Y=V=128 everywhere: mid grey
    out = message_to_rgb(raw_msg(uyvy, 'yuv422', width=8), min_pixels=1)
    assert out.shape == (4, 8, 3)
    assert np.abs(out.astype(int) - 128).max() <= 2


def test_row_padding_is_dropped() -> None:
    rgb = smooth_rgb(5, 7)
    np.testing.assert_array_equal(message_to_rgb(raw_msg(rgb, 'rgb8', pad=3), min_pixels=1),
                                  rgb)


def test_result_never_aliases_the_message() -> None:
    rgb = smooth_rgb()
    msg = raw_msg(rgb, 'rgb8')
    out = message_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(message_to_rgb(msg), rgb)


def test_jpeg_and_png() -> None:
    rgb = smooth_rgb()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    jpeg = message_to_rgb(compressed_msg(encode('.jpg', bgr), 'jpeg'))
    assert np.abs(jpeg.astype(int) - rgb).mean() < 3
    np.testing.assert_array_equal(message_to_rgb(compressed_msg(encode('.png', bgr), 'png')), rgb)


def test_png_variants_grey_alpha_16_bit() -> None:
    rgb = smooth_rgb()
    gray = rgb[:, :, 1].copy()
    bgra = np.dstack([rgb[:, :, ::-1], np.full(gray.shape, 9, np.uint8)])
    np.testing.assert_array_equal(message_to_rgb(compressed_msg(encode('.png', bgra), 'png')), rgb)
    out = message_to_rgb(compressed_msg(encode('.png', gray), 'png'))
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))
    out16 = message_to_rgb(compressed_msg(encode('.png', gray.astype(np.uint16) * 257), 'png'))
    np.testing.assert_array_equal(out16[..., 0], gray)


@pytest.mark.parametrize('msg, match', [
    (raw_msg(np.zeros((4, 4, 3), np.uint8), 'rgb9'), 'unknown image encoding'),
    (raw_msg(np.zeros((4, 4), np.float32), '32FC1'), 'not supported'),
    (raw_msg(np.zeros((6, 4), np.uint8), 'nv12', height=4), 'not supported'),
    (raw_msg(np.zeros((4, 4, 3), np.uint8), 'rgb8', step=10), 'step 10 is less than'),
    (raw_msg(np.zeros((4, 4, 3), np.uint8), 'rgb8', height=5), 'data has 48 bytes'),
    (raw_msg(np.zeros((0, 4, 3), np.uint8), 'rgb8'), 'zero-size'),
    (raw_msg(np.zeros((4, 0, 3), np.uint8), 'rgb8'), 'zero-size'),
])
def test_bad_raw_images_are_refused(msg: RbImage, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        message_to_rgb(msg)


def test_nan_depth_image_is_refused() -> None:
    depth = np.full((4, 4), np.nan, np.float32)
    with pytest.raises(ImageError, match="'32FC1' is not supported"):
        message_to_rgb(raw_msg(depth, '32FC1'))


def test_oversize_refused_before_reading_data() -> None:
    # The header claims 10,000 x 10,000 but carries no data: only the size check can refuse it
    # with this message, so no 300 MB buffer is ever looked at.
    empty = raw_msg(np.zeros((1, 1, 3), np.uint8), 'rgb8', height=10_000, width=10_000,
                    step=30_000)
    with pytest.raises(ImageError, match='100.0 MP, more than the limit of 50.0 MP'):
        message_to_rgb(empty)
    with pytest.raises(ImageError, match='more than the limit of 0.0 MP'):
        message_to_rgb(raw_msg(smooth_rgb(), 'rgb8'), max_pixels=100)


def test_genuine_oversize_png_refused_from_its_header() -> None:
    png = big_png(10_000)
    assert len(png) < 2_000_000
    with pytest.raises(ImageError, match='100.0 MP'):
        message_to_rgb(compressed_msg(png, 'png'))
    # the header is all that is read: a truncated body gives the same answer, not 'corrupt'
    with pytest.raises(ImageError, match='100.0 MP'):
        message_to_rgb(compressed_msg(png[:64], 'png'))


@pytest.mark.parametrize('mangle, match', [
    (lambda b: b'', 'neither JPEG nor PNG'),
    (lambda b: bytes(range(256)) * 4, 'neither JPEG nor PNG'),
    (lambda b: b[:2] + bytes(200), 'no JPEG frame header'),
    (lambda b: b[:len(b) // 2], 'truncated JPEG'),
    (lambda b: b'\x89PNG\r\n\x1a\n' + bytes(40), 'without an IHDR'),
])
def test_corrupt_compressed_images_are_refused(mangle, match: str) -> None:
    jpeg = encode('.jpg', smooth_rgb())
    with pytest.raises(ImageError, match=match):
        message_to_rgb(compressed_msg(mangle(jpeg), 'jpeg'))


def test_not_an_image_message() -> None:
    with pytest.raises(ImageError, match='neither a sensor_msgs Image'):
        message_to_rgb(header())


def test_stamp_ns() -> None:
    assert stamp_ns(raw_msg(smooth_rgb(2, 2), 'rgb8')) == 7_000_000_005


def _rclpy_cases() -> list[object]:
    rgb = smooth_rgb()
    gray16 = (rgb[:, :, 0].astype(np.uint16) * 300).astype(np.uint16)
    return [
        raw_msg(rgb, 'rgb8', pad=5), raw_msg(np.ascontiguousarray(rgb[:, :, ::-1]), 'bgr8'),
        raw_msg(np.dstack([rgb, rgb[:, :, :1]]), 'rgba8'), raw_msg(rgb[:, :, 0].copy(), 'mono8'),
        raw_msg(gray16, 'mono16', big_endian=sys.byteorder == 'little'),
        raw_msg(bayer_mosaic(rgb, 'grbg'), 'bayer_grbg8'),
        compressed_msg(encode('.jpg', rgb), 'jpeg'), compressed_msg(encode('.png', rgb), 'png'),
    ]


@pytest.mark.parametrize('rb_msg', _rclpy_cases())
def test_rclpy_and_rosbags_messages_convert_identically(rb_msg: object) -> None:
    """The node gets rclpy messages and replay gets rosbags ones: the arrays must be equal."""
    serialization = pytest.importorskip('rclpy.serialization')
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    kind = 'CompressedImage' if hasattr(rb_msg, 'format') else 'Image'
    rclpy_type = getattr(sensor_msgs, kind)
    cdr = TYPES.serialize_cdr(rb_msg, f'sensor_msgs/msg/{kind}')
    rclpy_msg = serialization.deserialize_message(bytes(cdr), rclpy_type)
    back = TYPES.deserialize_cdr(bytes(serialization.serialize_message(rclpy_msg)),
                                 f'sensor_msgs/msg/{kind}')
    expected = message_to_rgb(rb_msg)
    np.testing.assert_array_equal(message_to_rgb(rclpy_msg), expected)
    np.testing.assert_array_equal(message_to_rgb(back), expected)
