"""ROS test fixtures: an isolated DDS domain, rclpy contexts, a small map and a live vpr_node.

Each pytest process gets its own ROS_DOMAIN_ID, so helpers and CI jobs running ROS tests at the
same time never see each other's topics. Everything is real: rclpy, FastDDS, FAISS.
"""

from __future__ import annotations

import os

from image_samples import place_image
import numpy as np
import pytest

# before any rclpy participant exists; 100..199 stays clear of the default domain 0
os.environ['ROS_DOMAIN_ID'] = str(os.getpid() % 100 + 100)

import rclpy  # noqa: E402  (after ROS_DOMAIN_ID is set)

from ros_harness import PLACES, started  # noqa: E402

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone  # noqa: E402
from aesvc_vpr.retrieval.mapdb import MapDatabase  # noqa: E402


@pytest.fixture
def ros_context():
    """Give each test a fresh rclpy context (init/shutdown), on this process's domain."""
    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope='session')
def small_map(tmp_path_factory) -> MapDatabase:
    """Write 12 geotagged places embedded with the weights-free backbone, written as a real map."""
    backbone = PatchGridBackbone()
    images = [place_image(i) for i in range(PLACES)]
    utm = np.stack([500_000.0 + 30.0 * np.arange(PLACES),
                    4_000_000.0 + 10.0 * np.arange(PLACES)], axis=1)
    yaw = np.linspace(-3.0, 3.0, PLACES)
    return MapDatabase.write(tmp_path_factory.mktemp('map'), backbone.embed(images), utm, '17T',
                             yaw=yaw, backbone_name=backbone.name,
                             backbone_fingerprint=backbone.fingerprint)


@pytest.fixture
def harness(ros_context, small_map):
    """Start a configured, active vpr_node on the small map, with the tester subscribed."""
    yield from started(ros_context, small_map.root)


@pytest.fixture
def compressed_harness(ros_context, small_map):
    """Start the same node with ``image_transport: compressed``."""
    yield from started(ros_context, small_map.root, image_transport='compressed')
