"""Real pretrained weights: Coral's MobileNets through the ONNX backbone give the known answers.

The images go through the project's own path: ``read_rgb`` decodes the file (the node's
``message_to_rgb`` gives the same RGB array for a message), and the backbone resizes with the
node's rule (cv2 INTER_AREA when shrinking, ``backbone.pixels``). The reference embeddings
were made with PIL bilinear resizing, so they agree closely but not exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.backbone.registry import load_backbone
from aesvc_vpr.config import BackboneConfig, OnnxConfig
from aesvc_vpr.images.files import read_rgb

NAMES = ('cat', 'grace_hopper', 'bird')
CLASSIFIER = 'mobilenet_v2_1.0_224_quant.onnx'
EXTRACTOR = 'mobilenet_v1_1.0_224_quant_embedding_extractor.onnx'


@pytest.fixture(scope='module')
def coral(shared_data):
    folder = shared_data / 'mobilenet_coral'
    needed = [folder / '_DERIVED_onnx' / CLASSIFIER, folder / '_DERIVED_onnx' / EXTRACTOR,
              folder / 'expected_outputs.json', *(folder / 'images' / f'{n}.bmp' for n in NAMES)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f'Coral MobileNet data not found: {missing[0]}')
    expected = json.loads((folder / 'expected_outputs.json').read_text())
    images = [read_rgb(str(folder / 'images' / f'{n}.bmp')) for n in NAMES]
    return folder, expected, images


def mobilenet(folder, model: str, runtime: str = 'onnx-fp32') -> BackboneConfig:
    return BackboneConfig(model_name='onnx', weights=str(folder / '_DERIVED_onnx' / model),
                          runtime=runtime, onnx=OnnxConfig(preset='mobilenet-tf'))


@pytest.mark.parametrize('runtime', ['onnx-fp32', 'openvino-fp32'])
def test_classifier_gives_the_known_top1(coral, runtime) -> None:
    folder, expected, images = coral
    bb = load_backbone(mobilenet(folder, CLASSIFIER, runtime))
    probs = bb.embed(images)
    assert probs.shape == (3, 1001)
    labels = (folder / 'imagenet_labels.txt').read_text().splitlines()
    for name, row in zip(NAMES, probs):
        known = expected['classifier'][name]
        assert int(row.argmax()) == known['top1_index'], (name, labels[int(row.argmax())])
        assert labels[known['top1_index']] == known['top1_label']
        assert abs(float(row.max()) - known['top1_prob']) < 0.05, name


def test_embedding_extractor_matches_the_reference_embeddings(coral) -> None:
    folder, expected, images = coral
    bb = load_backbone(mobilenet(folder, EXTRACTOR))
    assert bb.dim == 1024 and bb.model.quantised
    out = bb.embed(images)
    reference = np.array([expected['embedding'][n] for n in NAMES], np.float32)
    cos = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference,
                                                                                  axis=1)
    assert cos.min() >= 0.99, dict(zip(NAMES, cos.round(4)))
    assert (out >= 0).all()   # ReLU6 features, dequantized
    # the quantised model runs as it is in the int8 modes: the very same numbers
    np.testing.assert_array_equal(
        load_backbone(mobilenet(folder, EXTRACTOR, 'onnx-int8')).embed(images), out)


def test_with_the_references_resize_and_scaling_the_embeddings_are_exact(coral) -> None:
    """PIL bilinear to 224 x 224 first, then the input quantisation (p - 128) / 128."""
    from PIL import Image
    folder, expected, _ = coral
    resized = [np.asarray(Image.open(folder / 'images' / f'{n}.bmp').convert('RGB').resize(
        (224, 224), Image.BILINEAR)) for n in NAMES]
    exact = OnnxConfig(preset='custom', scale=1 / 128, offset=-1.0, mean=(0, 0, 0),
                       std=(1, 1, 1))
    cfg = BackboneConfig(model_name='onnx', weights=str(folder / '_DERIVED_onnx' / EXTRACTOR),
                         runtime='onnx-fp32', onnx=exact)
    out = load_backbone(cfg).embed(resized)   # already 224 x 224: no second resize
    reference = np.array([expected['embedding'][n] for n in NAMES], np.float32)
    np.testing.assert_allclose(out, reference, atol=1e-5)
