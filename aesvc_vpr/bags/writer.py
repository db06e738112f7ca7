"""Writing a query set as a rosbag2 (camera images + Odometry): replayable data for tests, users.

The bag holds what a robot would record: an image topic (raw ``rgb8`` Image, or a JPEG/PNG
CompressedImage) and a ground-truth ``nav_msgs/Odometry`` topic whose x/y are the map frame's
UTM easting/northing, each image and its pose carrying the same header stamp. Bags are written
with the rosbags Writer (rosbag2 version 9, MCAP or sqlite3), into a temporary directory that is
renamed into place only when complete.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
import os
from pathlib import Path
import shutil
import tempfile
from typing import Iterable

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import get_typestore, Stores
from rosbags.typesys.store import Typestore

from aesvc_vpr.common.stamps import sec_nanosec
from aesvc_vpr.errors import BagError
from aesvc_vpr.images.rgb import as_rgb_uint8

DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000   # stamps of sets without capture times
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
IMAGE_FORMATS = ('raw', 'jpeg', 'png')


@dataclass(frozen=True)
class BagFrame:
    """One query: its image and where it was taken."""

    stamp_ns: int
    image: np.ndarray    # (H, W, 3) uint8 RGB
    easting: float       # metres, map frame (UTM)
    northing: float
    yaw: float = math.nan   # rad about +z; NaN (unknown) is written as the identity orientation


@dataclass(frozen=True)
class BagLayout:
    """Where and how the frames are written."""

    storage: str = 'mcap'                   # mcap | sqlite3
    image_topic: str = '/camera/image_raw'
    pose_topic: str = '/ground_truth/odom'
    image_format: str = 'raw'               # raw (rgb8 Image) | jpeg | png (CompressedImage)
    jpeg_quality: int = 95
    camera_frame: str = 'camera'
    map_frame: str = 'map'

    def __post_init__(self) -> None:
        """Refuse unknown storages and formats."""
        if self.storage not in STORAGES:
            raise BagError(
                f'bag storage must be one of {sorted(STORAGES)}, got {self.storage!r}')
        if self.image_format not in IMAGE_FORMATS:
            raise BagError(f'bag image format must be one of {IMAGE_FORMATS}, '
                           f'got {self.image_format!r}')
        if not 1 <= self.jpeg_quality <= 100:
            raise BagError(f'jpeg quality must be in 1..100, got {self.jpeg_quality}')


def write_query_bag(path: str | Path, frames: Iterable[BagFrame], layout: BagLayout | None = None,
                    *, overwrite: bool = False) -> int:
    """Write frames into a new rosbag2 directory.

    Args:
        path: the bag directory to create.
        frames: queries in stamp order.
        layout: topics, storage and image format.
        overwrite: replace an existing bag at ``path``.

    Returns:
        The number of frames written.

    Raises:
        BagError: ``path`` exists (without ``overwrite``), no frame was given, or writing failed.
    """
    layout = layout or BagLayout()
    target = Path(path)
    if target.exists() and not overwrite:
        raise BagError(f'{target} exists already; choose another path or pass --force')
    target.parent.mkdir(parents=True, exist_ok=True)
    store = get_typestore(Stores.ROS2_KILTED)
    staging = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', dir=target.parent))
    try:
        count = _write(staging / target.name, frames, layout, store)
        if count == 0:
            raise BagError(f'{target}: no frames to write')
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / target.name, target)
    except WriterError as err:
        raise BagError(f'{target}: writing the bag failed ({err})') from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def encode_image(rgb: np.ndarray, stamp_ns: int, frame_id: str, image_format: str = 'raw',
                 jpeg_quality: int = 95, store: Typestore | None = None) -> tuple[str, object]:
    """Make a rosbags Image (rgb8) or CompressedImage (jpeg/png) message from an RGB array.

    Returns:
        (message type name, rosbags message object).
    """
    store = store or get_typestore(Stores.ROS2_KILTED)
    types = store.types
    rgb = as_rgb_uint8(rgb)
    header = _header(types, stamp_ns, frame_id)
    if image_format == 'raw':
        height, width = rgb.shape[:2]
        msgtype = 'sensor_msgs/msg/Image'
        return msgtype, types[msgtype](header=header, height=height, width=width, encoding='rgb8',
                                       is_bigendian=0, step=width * 3, data=rgb.reshape(-1))
    ext, params = ('.jpg', [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]) if image_format == 'jpeg' \
        else ('.png', [])
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BagError(f'OpenCV could not encode a {rgb.shape} image as {image_format}')
    msgtype = 'sensor_msgs/msg/CompressedImage'
    return msgtype, types[msgtype](header=header, format=image_format,
                                   data=np.asarray(buf, np.uint8).reshape(-1))


def _write(path: Path, frames: Iterable[BagFrame], layout: BagLayout, store: Typestore) -> int:
    image_type = 'sensor_msgs/msg/Image' if layout.image_format == 'raw' \
        else 'sensor_msgs/msg/CompressedImage'
    count = 0
    with Writer(path, version=9, storage_plugin=STORAGES[layout.storage]) as writer:
        image_conn = writer.add_connection(layout.image_topic, image_type, typestore=store)
        pose_conn = writer.add_connection(layout.pose_topic, 'nav_msgs/msg/Odometry',
                                          typestore=store)
        for frame in frames:
            msgtype, image = encode_image(frame.image, frame.stamp_ns, layout.camera_frame,
                                          layout.image_format, layout.jpeg_quality, store)
            odom = encode_odometry(frame, layout, store)
            # the pose first: a reader that stops at an image has its ground truth already
            writer.write(pose_conn, frame.stamp_ns,
                         store.serialize_cdr(odom, 'nav_msgs/msg/Odometry'))
            writer.write(image_conn, frame.stamp_ns, store.serialize_cdr(image, msgtype))
            count += 1
    return count


def _header(types: dict, stamp_ns: int, frame_id: str) -> object:
    sec, nanosec = sec_nanosec(stamp_ns)
    stamp = types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def encode_odometry(frame: BagFrame, layout: BagLayout | None = None,
                    store: Typestore | None = None) -> object:
    """Make a rosbags nav_msgs/Odometry of the frame's position and yaw in the map frame.

    An unknown yaw (NaN) is written as the identity orientation with yaw variance -1, which
    ``aesvc_vpr.groundtruth`` reads back as unknown.
    """
    layout = layout or BagLayout()
    types = (store or get_typestore(Stores.ROS2_KILTED)).types
    yaw = 0.0 if math.isnan(frame.yaw) else frame.yaw
    point = types['geometry_msgs/msg/Point'](x=float(frame.easting), y=float(frame.northing),
                                             z=0.0)
    quat = types['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=math.sin(yaw / 2),
                                                 w=math.cos(yaw / 2))
    # unknown yaw: variance -1, as REP-145 marks a quantity that is not measured
    cov = np.zeros(36, np.float64)
    cov[35] = -1.0 if math.isnan(frame.yaw) else 0.0
    pose = types['geometry_msgs/msg/PoseWithCovariance'](
        pose=types['geometry_msgs/msg/Pose'](position=point, orientation=quat), covariance=cov)
    vector = types['geometry_msgs/msg/Vector3']
    twist = types['geometry_msgs/msg/TwistWithCovariance'](
        twist=types['geometry_msgs/msg/Twist'](linear=vector(x=0.0, y=0.0, z=0.0),
                                               angular=vector(x=0.0, y=0.0, z=0.0)),
        covariance=np.zeros(36, np.float64))
    return types['nav_msgs/msg/Odometry'](
        header=_header(types, frame.stamp_ns, layout.map_frame),
        child_frame_id=layout.camera_frame, pose=pose, twist=twist)
