"""vpr_node with a real pretrained ONNX model (Coral MobileNet v1) on real Corridor frames.

The map is built from VPR-Bench Corridor's ref/ images with the same backbone settings the node
gets as parameters. Real query frames go in as sensor_msgs/Image over DDS; the node must answer
exactly what the ROS-free core answers for the same frames, and a map frame must find itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_harness import Harness, image_msg, local_xy

from aesvc_vpr.backbone.registry import load_backbone
from aesvc_vpr.config import BackboneConfig, OnnxConfig
from aesvc_vpr.data.datasets import load_dataset
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.index.ranking import positives_within
from aesvc_vpr.retrieval.mapbuild import build_map

MODEL = 'mobilenet_coral/_DERIVED_onnx/mobilenet_v1_1.0_224_quant_embedding_extractor.onnx'
FRAMES = (5, 30, 55, 80, 105)


@pytest.fixture(scope='module')
def corridor(shared_data, tmp_path_factory):
    """Build the Corridor map with MobileNet (raw 1024-d, no head)."""
    model, root = shared_data / MODEL, shared_data / 'vprbench_corridor'
    if not model.is_file() or not (root / 'ground_truth_new.npy').is_file():
        pytest.skip(f'{model} or {root} not found')
    cfg = BackboneConfig(model_name='onnx', weights=str(model), runtime='onnx-fp32',
                         onnx=OnnxConfig(preset='mobilenet-tf'))
    backbone = load_backbone(cfg)
    data = load_dataset(root)
    mapdb = build_map(data.database, tmp_path_factory.mktemp('corridor'), backbone,
                      progress=False)
    return data, mapdb, backbone


def test_node_localizes_real_frames_as_the_core_does(ros_context, corridor, shared_data):
    data, mapdb, backbone = corridor
    h = Harness(ros_context, mapdb.root, **{
        'backbone.model_name': 'onnx', 'backbone.weights': str(shared_data / MODEL),
        'backbone.onnx.preset': 'mobilenet-tf', 'search.prefix_dim': 1024})
    try:
        assert h.node.autostart(), 'vpr_node failed to configure or activate'
        h.wait_subscribed()
        frames = [read_rgb(data.queries.paths[q]) for q in FRAMES]
        raw = backbone.embed(frames)
        units = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        stored = mapdb.embeddings / np.linalg.norm(mapdb.embeddings, axis=1, keepdims=True)
        expected = np.argsort(-(units @ stored.T), axis=1)[:, 0]   # the core's top-1 rows
        positives = positives_within(mapdb.utm, data.queries.utm[list(FRAMES)], data.radius_m)
        for i, q in enumerate(FRAMES):
            h.image_pub.publish(image_msg(frames[i], 1000 + q))
            candidates, scores = h.wait_result(1000 + q)
            best = candidates.poses[0].position
            assert (best.x, best.y) == tuple(local_xy(mapdb)[expected[i]]), q
            assert np.isclose(scores.data[0], (units[i] @ stored[expected[i]]), atol=1e-3)
        correct = sum(int(expected[i]) in positives[i] for i in range(len(FRAMES)))
        assert correct >= 3, f'only {correct} of {len(FRAMES)} real frames localized'
        # a map frame sent as a message finds itself: message decode = file decode
        h.image_pub.publish(image_msg(read_rgb(data.database.paths[40]), 2000))
        candidates, scores = h.wait_result(2000)
        assert (candidates.poses[0].position.x, scores.data[0] > 0.999) == (
            local_xy(mapdb)[40, 0], True)
    finally:
        h.close()
