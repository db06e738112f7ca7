"""Unit tests (no ROS, network or weights), one folder per layer of the package.

This file puts test/unit on the import path, so the shared sample makers here (map_samples,
head_samples, dinov2_tiny) import from every layer's folder.
"""
