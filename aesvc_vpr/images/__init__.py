"""Images in: files, URLs and ROS image messages become validated (H, W, 3) uint8 RGB arrays.

Raises only ImageError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'as_rgb_uint8': 'rgb', 'read_rgb': 'files', 'image_files': 'files',
    'IMAGE_SUFFIXES': 'files', 'decoded_batches': 'files', 'DecodedBatch': 'files',
    'Failure': 'files', 'log_failures': 'files', 'message_to_rgb': 'messages',
    'DEFAULT_MAX_PIXELS': 'messages', 'DEFAULT_MIN_PIXELS': 'messages',
    'decode_file_bytes': 'decode', 'checked_shape': 'decode', 'compressed_shape': 'decode',
    'is_url': 'locations', 'join_location': 'locations', 'check_protocols': 'locations',
    'read_bytes': 'locations',
})
