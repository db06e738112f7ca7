"""One decode policy for files and messages: truncated, tiny and huge images are refused."""

from __future__ import annotations

from pathlib import Path
import struct
import zlib

import cv2
from image_samples import smooth_rgb
import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.config import ImageConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import ConfigError, ImageError
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.images.messages import message_to_rgb
from aesvc_vpr.retrieval.mapbuild import build_map

ROS2 = get_typestore(Stores.ROS2_KILTED)


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))


def _header_only_png(width: int, height: int) -> bytes:
    """Make a PNG whose header claims ``width`` x ``height``, with no pixel data at all."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IEND', b'')


def _compressed(data: bytes, fmt: str = 'jpeg'):
    return ROS2.types['sensor_msgs/msg/CompressedImage'](
        header=ROS2.types['std_msgs/msg/Header'](
            stamp=ROS2.types['builtin_interfaces/msg/Time'](sec=0, nanosec=0), frame_id='c'),
        format=fmt, data=np.frombuffer(data, np.uint8))


def test_a_truncated_jpeg_is_refused_by_files_and_messages_alike(tmp_path):
    data = _jpeg(smooth_rgb(240, 320))
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(data[:len(data) // 3])
    # OpenCV decodes it without an error, the lower part grey: the policy must catch it
    grey_filled = cv2.imread(str(cut))
    assert grey_filled is not None and grey_filled.shape == (240, 320, 3)
    with pytest.raises(ImageError, match='truncated JPEG') as err:
        read_rgb(str(cut))
    assert err.value.cause == 'truncated'
    with pytest.raises(ImageError, match='truncated JPEG') as err:
        message_to_rgb(_compressed(data[:len(data) // 3]))
    assert err.value.cause == 'truncated'
    whole = tmp_path / 'whole.jpg'
    whole.write_bytes(data)
    assert read_rgb(str(whole)).shape == (240, 320, 3)


def test_a_truncated_png_is_refused(tmp_path):
    ok, data = cv2.imencode('.png', smooth_rgb())
    cut = tmp_path / 'cut.png'
    cut.write_bytes(data.tobytes()[:-20])
    with pytest.raises(ImageError, match='truncated PNG'):
        read_rgb(str(cut))


def test_tiny_images_are_refused_unless_configured(tmp_path):
    dot = tmp_path / 'dot.png'
    cv2.imwrite(str(dot), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match='1x1 has 1 pixels, fewer than the minimum of 256') as err:
        read_rgb(str(dot))
    assert err.value.cause == 'too small'
    assert read_rgb(str(dot), ImageConfig(min_pixels=1)).shape == (1, 1, 3)


def test_size_comes_from_the_header_before_any_decoding(tmp_path):
    huge = tmp_path / 'huge.png'
    huge.write_bytes(_header_only_png(20_000, 20_000))    # 400 MP claimed, 45 bytes on disk
    with pytest.raises(ImageError, match='400.0 MP, more than the limit of 50.0 MP') as err:
        read_rgb(str(huge))
    assert err.value.cause == 'too large'
    with pytest.raises(ImageError, match='more than the limit of 0.0 MP'):
        read_rgb(str(huge), ImageConfig(min_pixels=1, max_pixels=10))
    with pytest.raises(ConfigError, match='min_pixels <= max_pixels'):
        ImageConfig(min_pixels=10, max_pixels=5)


def test_other_formats_are_sized_from_their_header_too(tmp_path):
    bmp = tmp_path / 'tiny.bmp'
    cv2.imwrite(str(bmp), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match='4x4 has 16 pixels'):
        read_rgb(str(bmp))
    garbage = tmp_path / 'garbage.webp'
    garbage.write_bytes(b'RIFF\x00\x00\x00\x00nonsense')
    with pytest.raises(ImageError, match='not a readable image'):
        read_rgb(str(garbage))


def test_the_map_builder_lists_every_refused_image(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    paths = []
    for i in range(20):
        path = folder / f'{i:02d}.jpg'
        data = _jpeg(np.roll(smooth_rgb(64, 80), 3 * i, axis=1))
        path.write_bytes(data[:len(data) // 3] if i == 4 else data)
        paths.append(str(path))
    cv2.imwrite(str(folder / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    (folder / 'huge.png').write_bytes(_header_only_png(20_000, 20_000))
    paths[9], paths[15] = str(folder / 'dot.png'), str(folder / 'huge.png')
    utm = np.column_stack([np.arange(20.0), np.zeros(20)])
    mapdb = build_map(GeoImageSet(tuple(paths), utm, '17T'), tmp_path / 'map',
                      PatchGridBackbone(), progress=False, max_failed_fraction=0.2)
    assert mapdb.count == 17
    failed = {f['row']: f['reason'] for f in mapdb.failed_images}
    assert sorted(failed) == [4, 9, 15]
    assert 'truncated JPEG' in failed[4] and 'fewer than the minimum' in failed[9]
    assert 'more than the limit' in failed[15]
    assert Path(failed[4].split(':')[0]).name == '04.jpg'
