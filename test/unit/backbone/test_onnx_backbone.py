"""The ONNX backbone on tiny models exported from torch: outputs, pre-processing, refusals."""

from __future__ import annotations

import dataclasses
import shutil

import dinov2_tiny
import numpy as np
from onnx_tiny import export, images, TinyNet
import pytest
import torch

from aesvc_vpr.backbone.calibration import CalibrationSet
from aesvc_vpr.backbone.onnx_backbone import OnnxBackbone
from aesvc_vpr.backbone.onnx_model import read_model
from aesvc_vpr.backbone.pixels import OnnxPixels, resize_rgb
from aesvc_vpr.backbone.registry import load_backbone
from aesvc_vpr.backbone.runtime.export import onnx_dir
from aesvc_vpr.config import BackboneConfig, OnnxConfig
from aesvc_vpr.errors import BackboneError, ConfigError

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Every tiny model, exported once: {kind: path}."""
    root = tmp_path_factory.mktemp('onnx')
    return {
        'vector': export(TinyNet('vector'), root / 'vector.onnx'),
        'other': export(TinyNet('vector', seed=1), root / 'other.onnx'),
        'map': export(TinyNet('map'), root / 'map.onnx'),
        'both': export(TinyNet('both'), root / 'both.onnx'),
        'nhwc': export(TinyNet('vector', nhwc=True), root / 'nhwc.onnx'),
        'batch1': export(TinyNet('vector'), root / 'batch1.onnx', dynamic_batch=False),
        'int64': export(TinyNet('vector'), root / 'int64.onnx', dtype=torch.int64),
    }


def config(path, runtime: str = 'onnx-fp32', **onnx) -> BackboneConfig:
    return BackboneConfig(model_name='onnx', weights=str(path), runtime=runtime,
                          onnx=OnnxConfig(**onnx))


def reference(net: TinyNet, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(pixels))
    return (out[1] if isinstance(out, tuple) else out).numpy()


def test_embeddings_equal_the_torch_model_on_the_same_pixels(models) -> None:
    bb = load_backbone(config(models['vector']))
    assert isinstance(bb, OnnxBackbone) and bb.dim == 16
    batch = images(5)
    out = bb.embed(batch)
    np.testing.assert_allclose(out, reference(TinyNet('vector'), bb.pixels(batch)), atol=1e-5)
    assert bb.name == f'onnx:{bb.weights_fingerprint[:16]}'


def test_prefix_form_and_a_fixed_batch_of_one(models) -> None:
    batched = load_backbone(config(models['vector']))
    single = load_backbone(BackboneConfig(model_name=f'onnx:{models["batch1"]}',
                                          runtime='onnx-fp32'))
    assert single.step == 1
    batch = images(3)
    np.testing.assert_allclose(single.embed(batch), batched.embed(batch), atol=1e-5)


def test_pixels_follow_the_scaling_channels_and_layout() -> None:
    flat = np.zeros((4, 4, 3), np.uint8)
    flat[:] = (10, 100, 200)
    tf = OnnxPixels(OnnxConfig(preset='mobilenet-tf'), 4, 4, np.float32)([flat])
    assert tf.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(tf[0, :, 0, 0], np.array([10, 100, 200]) / 127.5 - 1, atol=1e-6)
    custom = OnnxConfig(preset='custom', scale=1.0, offset=-10.0, mean=(0, 1, 2),
                        std=(1, 2, 4), channels='bgr', layout='nhwc')
    pixels = OnnxPixels(custom, 4, 4, np.float32)([flat])
    assert pixels.shape == (1, 4, 4, 3)
    # bgr: channel 0 is blue (200); mean and std stay per colour (R, G, B), so blue's are last
    np.testing.assert_allclose(pixels[0, 0, 0], [(200 - 10 - 2) / 4, (100 - 10 - 1) / 2,
                                                 (10 - 10 - 0) / 1], atol=1e-5)
    raw = OnnxPixels(OnnxConfig(preset='custom', scale=1.0, mean=(0, 0, 0), std=(1, 1, 1)),
                     4, 4, np.uint8)([flat])
    assert raw.dtype == np.uint8 and raw[0, :, 0, 0].tolist() == [10, 100, 200]


def test_crop_keeps_the_centre_and_stretch_the_whole_image() -> None:
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, 16:48] = 255                   # white centre square, black sides
    assert resize_rgb(wide, 16, 16, crop=True).min() == 255
    stretched = resize_rgb(wide, 16, 16)
    assert stretched[:, 0].max() == 0 and stretched[:, 8].min() == 255


def test_pooling_of_a_spatial_map(models) -> None:
    batch = images(2)
    fmap_bb = load_backbone(config(models['map'], pooling='avg'))
    vector_bb = load_backbone(config(models['vector']))
    np.testing.assert_allclose(fmap_bb.embed(batch), vector_bb.embed(batch), atol=1e-5)
    gem = load_backbone(config(models['map'], pooling='gem'))
    fmap = reference(TinyNet('map'), gem.pixels(batch))
    expected = (np.maximum(fmap, 1e-6) ** 3).mean(axis=(2, 3)) ** (1 / 3)
    np.testing.assert_allclose(gem.embed(batch), expected, rtol=1e-4)
    assert gem.fingerprint != fmap_bb.fingerprint


def test_a_named_output_and_the_normalised_flag(models) -> None:
    bb = load_backbone(config(models['both'], output='desc', normalised=True))
    out = bb.embed(images(3))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(BackboneError, match=r'feature_map has norm .* set '
                                            r'backbone.onnx.normalised false'):
        load_backbone(config(models['both'], output='feature_map', pooling='avg',
                             normalised=True))


def test_fingerprint_follows_the_file_content_and_every_setting(models, tmp_path) -> None:
    a = load_backbone(config(models['vector']))
    copy = shutil.copy(models['vector'], tmp_path / 'renamed.onnx')
    assert (load_backbone(config(copy)).fingerprint, load_backbone(config(copy)).name) == (
        a.fingerprint, a.name)
    other = load_backbone(config(models['other']))
    assert other.name != a.name and other.fingerprint != a.fingerprint
    for change in ({'preset': 'mobilenet-tf'}, {'resize': 'crop'}, {'channels': 'bgr'}):
        assert load_backbone(config(models['vector'], **change)).fingerprint != a.fingerprint
    # the runtime is left out: a map built in fp32 serves an OpenVINO node
    assert load_backbone(config(models['vector'], 'openvino-fp32')).fingerprint == a.fingerprint


def test_a_pinned_name_refuses_another_file(models) -> None:
    a = load_backbone(config(models['vector']))
    pinned = BackboneConfig(model_name=a.name, weights=str(models['vector']), runtime='onnx-fp32')
    assert load_backbone(pinned).fingerprint == a.fingerprint
    with pytest.raises(BackboneError, match='is not the model'):
        load_backbone(dataclasses.replace(pinned, weights=str(models['other'])))


@pytest.mark.parametrize('kind, settings, message', [
    ('missing', {}, r'no such ONNX file; set backbone.weights'),
    ('nhwc', {}, r'32 channels on axis 1 for backbone.onnx.layout nchw; set '
                 r'backbone.onnx.layout nhwc'),
    ('vector', {'input_size': 64}, r'fixed at 32x32 pixels, but backbone.onnx.input_size is 64'),
    ('int64', {}, r'input pixels is int64; images can be fed as'),
    ('map', {}, r'output out gives shape \[1, 16, 8, 8\].*set backbone.onnx.pooling avg or gem'),
    ('vector', {'pooling': 'gem'}, r'needs a rank 3 \(tokens\) or rank 4 \(map\) output'),
    ('vector', {'output': 'logits'}, r"no output 'logits'; set backbone.onnx.output"),
])
def test_refusals_name_the_ports_and_the_setting(models, tmp_path, kind, settings,
                                                 message) -> None:
    path = models.get(kind, tmp_path / 'missing.onnx')
    with pytest.raises(BackboneError, match=message) as info:
        load_backbone(config(path, **settings))
    if kind != 'missing':   # the model's actual inputs and outputs are in every message
        assert 'inputs: pixels ' in str(info.value) and 'outputs: ' in str(info.value)


def test_nhwc_layout_runs_the_nhwc_model(models) -> None:
    bb = load_backbone(config(models['nhwc'], layout='nhwc'))
    ref = load_backbone(config(models['vector']))
    batch = images(2)
    np.testing.assert_allclose(bb.embed(batch), ref.embed(batch), atol=1e-5)


def test_name_without_weights_and_bad_presets_are_refused(models) -> None:
    with pytest.raises(BackboneError, match="'onnx' needs backbone.weights"):
        load_backbone(BackboneConfig(model_name='onnx'))
    with pytest.raises(ConfigError, match='set backbone.onnx.preset to custom'):
        OnnxConfig(preset='mobilenet-tf', mean=(0.5, 0.5, 0.5))
    with pytest.raises(BackboneError, match='torch-bf16 cannot run an ONNX model'):
        load_backbone(config(models['vector'], 'torch-bf16'))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_runtimes_agree_and_int8_quantizes_a_float_model_once(models) -> None:
    batch = images(6)
    fp32 = load_backbone(config(models['vector'])).embed(batch)
    ov = load_backbone(config(models['vector'], 'openvino-fp32')).embed(batch)
    assert cosine(ov, fp32).min() >= 0.99999
    int8 = load_backbone(config(models['vector'], 'onnx-int8'))
    assert not int8.model.quantised and read_model(int8.runner.path).quantised
    assert cosine(int8.embed(batch), fp32).min() >= 0.99
    calibration = CalibrationSet('tiny', render=lambda: images(8, seed=3))
    ov8 = load_backbone(config(models['vector'], 'openvino-int8'), calibration)
    assert ov8.runner.path.suffix == '.xml'
    assert cosine(ov8.embed(batch), fp32).min() >= 0.99


def test_a_quantised_model_runs_as_it_is(models, tmp_path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantised = tmp_path / 'quantised.onnx'
    quantize_dynamic(str(models['vector']), str(quantised), op_types_to_quantize=['Conv'],
                     weight_type=QuantType.QUInt8)
    assert read_model(quantised).quantised
    as_is = load_backbone(config(quantised))
    for runtime in ('onnx-int8', 'openvino-int8'):
        bb = load_backbone(config(quantised, runtime))
        assert bb.runner.path == quantised   # no second quantization
        np.testing.assert_allclose(bb.embed(images(2)), as_is.embed(images(2)), atol=1e-2)
    assert not list(onnx_dir([quantised]).glob('*int8*'))


@pytest.mark.parametrize('runtime', ['onnx-fp32', 'openvino-fp32'])
def test_a_model_the_runtime_cannot_run_is_refused_and_kept(tmp_path, runtime) -> None:
    from onnx import helper, save, TensorProto
    node = helper.make_node('NoSuchOp', ['pixels'], ['out'], domain='com.example')
    graph = helper.make_graph(
        [node], 'unknown', [helper.make_tensor_value_info('pixels', TensorProto.FLOAT,
                                                          [1, 3, 32, 32])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 16])])
    path = tmp_path / 'unknown.onnx'
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                 helper.make_opsetid('com.example', 1)]),
         str(path))
    with pytest.raises(BackboneError, match=f'backbone.runtime {runtime} cannot run this model'
                                            '.*try another backbone.runtime'):
        load_backbone(config(path, runtime))
    assert path.is_file()
