"""The ROS 2 shell around the core: the lifecycle node, its modes, parameters and outputs.

With the CLI, the only layer that imports rclpy. ``params``, ``worker`` and ``diagnostics`` load
without ROS so unit tests and docs can use them.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {'VprNode': 'node', 'main': 'node'})
