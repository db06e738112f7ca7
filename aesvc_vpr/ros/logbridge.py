"""Python ``logging`` of the core, forwarded to the node's rclpy logger and so to /rosout.

The core logs through ``logging.getLogger(__name__)`` without handlers (it never imports ROS).
Inside the node those lines would reach stderr only, without severity or node name, and never
/rosout. ``bridge_logging`` attaches one handler to the ``aesvc_vpr`` package logger that hands
each record to the node's logger at the matching severity; ``unbridge`` removes it.
"""

from __future__ import annotations

import logging
from typing import Any

PACKAGE_LOGGER = 'aesvc_vpr'


class RosLogHandler(logging.Handler):
    """Sends records to an rclpy logger (thread-safe: rcutils logging is)."""

    def __init__(self, ros_logger: Any) -> None:
        """Forward to ``ros_logger`` (``node.get_logger()``)."""
        super().__init__()
        self._ros = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        """Log one record at its severity, named by the core module that wrote it."""
        try:
            text = f'[{record.name}] {record.getMessage()}'
        except Exception:  # noqa: BLE001 - a bad format string must not kill a frame
            self.handleError(record)
            return
        if record.exc_info:
            text += '\n' + logging.Formatter().formatException(record.exc_info)
        if record.levelno >= logging.CRITICAL:
            self._ros.fatal(text)
        elif record.levelno >= logging.ERROR:
            self._ros.error(text)
        elif record.levelno >= logging.WARNING:
            self._ros.warning(text)
        elif record.levelno >= logging.INFO:
            self._ros.info(text)
        else:
            self._ros.debug(text)


def _bridges(package: logging.Logger) -> list[logging.Handler]:
    return [h for h in package.handlers if isinstance(h, RosLogHandler)]


def bridge_logging(ros_logger: Any) -> RosLogHandler:
    """Attach a handler for the package's records at INFO and above; returns it for unbridge.

    The package logger's level is lowered to INFO while any bridge is attached, and restored
    when the last one is detached, so a node leaves the process's logging as it found it.
    """
    handler = RosLogHandler(ros_logger)
    package = logging.getLogger(PACKAGE_LOGGER)
    if not _bridges(package):
        _LEVEL_BEFORE[0] = package.level
    package.addHandler(handler)
    if package.level == logging.NOTSET or package.level > logging.INFO:
        package.setLevel(logging.INFO)
    return handler


def unbridge(handler: RosLogHandler) -> None:
    """Detach a handler from ``bridge_logging``; the last one restores the level it found."""
    package = logging.getLogger(PACKAGE_LOGGER)
    package.removeHandler(handler)
    if not _bridges(package):
        package.setLevel(_LEVEL_BEFORE[0])


_LEVEL_BEFORE = [logging.NOTSET]     # the package logger's level before the first bridge
