"""ROS time stamps as integer nanoseconds: the one conversion every layer shares.

Stamps stay int ns everywhere (as in rosbags): float seconds would round them. The helpers take
any object with the fields of ``builtin_interfaces/Time`` (rclpy or rosbags messages alike).
"""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def time_ns(stamp: Any) -> int:
    """Return a ``builtin_interfaces/Time``-like ``stamp`` (sec, nanosec) as int nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_ns(msg: Any) -> int:
    """Return a message's ``header.stamp`` as int nanoseconds."""
    return time_ns(msg.header.stamp)


def sec_nanosec(ns: int) -> tuple[int, int]:
    """Split int nanoseconds into the (sec, nanosec) fields of a ``builtin_interfaces/Time``."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec
