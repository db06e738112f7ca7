"""Small bags written with the real rosbags writers, for the bag tests (ROS 1 and rosbag2)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from rosbags.typesys.store import Typestore

from aesvc_vpr.bags.writer import encode_image

ROS2 = get_typestore(Stores.ROS2_KILTED)
ROS1 = get_typestore(Stores.ROS1_NOETIC)
# (topic, msgtype, bag time ns, rosbags message built with a ROS 2 typestore)
Entry = tuple[str, str, int, object]


def header(stamp_ns: int, frame_id: str = 'map', store: Typestore = ROS2) -> object:
    """Make a std_msgs Header at ``stamp_ns``."""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = store.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)
    return store.types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def image(topic: str, stamp_ns: int, rgb: np.ndarray, log_ns: int | None = None,
          image_format: str = 'raw') -> Entry:
    """Make an Image (raw rgb8) or CompressedImage entry."""
    msgtype, msg = encode_image(rgb, stamp_ns, 'camera', image_format, store=ROS2)
    return topic, msgtype, stamp_ns if log_ns is None else log_ns, msg


def pose_stamped(topic: str, stamp_ns: int, x: float, y: float, yaw: float) -> Entry:
    """Make a geometry_msgs/PoseStamped entry."""
    t = ROS2.types
    quat = t['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=math.sin(yaw / 2),
                                             w=math.cos(yaw / 2))
    pose = t['geometry_msgs/msg/Pose'](position=t['geometry_msgs/msg/Point'](x=x, y=y, z=0.0),
                                       orientation=quat)
    msgtype = 'geometry_msgs/msg/PoseStamped'
    return topic, msgtype, stamp_ns, t[msgtype](header=header(stamp_ns), pose=pose)


def pose_with_covariance(topic: str, stamp_ns: int, x: float, y: float, yaw: float) -> Entry:
    """Make a geometry_msgs/PoseWithCovarianceStamped entry."""
    _, _, _, stamped = pose_stamped(topic, stamp_ns, x, y, yaw)
    t = ROS2.types
    msgtype = 'geometry_msgs/msg/PoseWithCovarianceStamped'
    inner = t['geometry_msgs/msg/PoseWithCovariance'](pose=stamped.pose,
                                                      covariance=np.zeros(36, np.float64))
    return topic, msgtype, stamp_ns, t[msgtype](header=header(stamp_ns), pose=inner)


def navsatfix(topic: str, stamp_ns: int, lat: float, lon: float, status: int = 0) -> Entry:
    """Make a sensor_msgs/NavSatFix entry; status -1 means no fix."""
    t = ROS2.types
    msgtype = 'sensor_msgs/msg/NavSatFix'
    msg = t[msgtype](header=header(stamp_ns, 'gps'),
                     status=t['sensor_msgs/msg/NavSatStatus'](status=status, service=1),
                     latitude=lat, longitude=lon, altitude=0.0,
                     position_covariance=np.zeros(9, np.float64), position_covariance_type=0)
    return topic, msgtype, stamp_ns, msg


def write_ros2(path: Path, entries: Sequence[Entry], storage: str = 'mcap',
               store: Typestore = ROS2) -> Path:
    """Write entries, in bag time order, into a new rosbag2 (definitions embedded)."""
    entries = sorted(entries, key=lambda e: e[2])
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns: dict[str, object] = {}
        for topic, msgtype, log_ns, msg in entries:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], log_ns, store.serialize_cdr(msg, msgtype))
    return path


def write_ros1(path: Path, entries: Sequence[Entry], store: Typestore = ROS2,
               store1: Typestore = ROS1) -> Path:
    """Write entries, in bag time order, into a ROS 1 bag (converted from CDR, with seq)."""
    entries = sorted(entries, key=lambda e: e[2])
    with Ros1Writer(path) as writer:
        conns: dict[str, object] = {}
        for topic, msgtype, log_ns, msg in entries:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store1)
            writer.write(conns[topic], log_ns,
                         store.cdr_to_ros1(store.serialize_cdr(msg, msgtype), msgtype))
    return path


def random_rgb(rng: np.random.Generator, height: int = 24, width: int = 32) -> np.ndarray:
    """Draw a random (H, W, 3) uint8 image."""
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
