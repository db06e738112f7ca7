"""Runtime modes against torch fp32 on a tiny model, the ONNX and OpenVINO caches, calibration."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cv2
import dinov2_tiny
from dinov2_tiny import images, Tiny, tiny_arch, WIDTH
import numpy as np
import pytest

from aesvc_vpr.backbone.calibration import CALIBRATION_COUNT, calibration_set
from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.fingerprints import cache_root
from aesvc_vpr.backbone.runtime.openvino import OpenVinoRunner
from aesvc_vpr.backbone.runtime.runners import MIN_COSINE, OnnxRunner, TorchRunner
from aesvc_vpr.backbone.weights import load_weights, random_weights
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.data.town.views import town_calibration
from aesvc_vpr.errors import BackboneError

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture
tiny = dinov2_tiny.tiny                         # each tiny model, per module


def backbone(tiny: Tiny, **cfg) -> DinoV2Backbone:
    return DinoV2Backbone(BackboneConfig(model_name='tiny_dinov2', **cfg),
                          load_weights(tiny.hf_dir, tiny_arch(tiny.registers)),
                          town_calibration())


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize('runtime', ['torch-bf16', 'onnx-fp32', 'onnx-int8', 'openvino-fp32',
                                     'openvino-int8'])
def test_runtime_within_its_tolerance_of_fp32(tiny, runtime) -> None:
    batch = images(6)
    reference = backbone(tiny, descriptor='cls+gem', batch_size=4).embed(batch)
    out = backbone(tiny, descriptor='cls+gem', runtime=runtime, batch_size=4).embed(batch)
    assert out.shape == reference.shape == (6, 2 * WIDTH) and out.dtype == np.float32
    for part in (slice(0, WIDTH), slice(WIDTH, 2 * WIDTH)):   # cls and gem separately
        assert row_cosines(out[:, part], reference[:, part]).min() >= MIN_COSINE[runtime]
    if runtime.endswith('-fp32'):
        assert np.abs(out - reference).max() < 1e-4
    else:   # reduced precision really ran: not bit-identical to fp32
        assert np.abs(out - reference).max() > 1e-6


def test_a_map_built_by_the_cli_default_serves_the_node_default_runtime(tiny) -> None:
    from aesvc_vpr.ros.params import PARAMS_BY_NAME   # ROS-free module: the node's table

    cli, node = BackboneConfig().runtime, PARAMS_BY_NAME['backbone.runtime'].default
    assert (cli, node) == ('torch-fp32', 'onnx-fp32')
    database, queries = images(12), images(4, seed=1)

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    map_rows = unit(backbone(tiny, runtime=cli, batch_size=4).embed(database))
    node_bb = backbone(tiny, runtime=node)
    assert node_bb.fingerprint == backbone(tiny, runtime=cli).fingerprint   # the map accepts it
    found = unit(node_bb.embed(queries)) @ map_rows.T                 # cosines, as the index
    expected = unit(backbone(tiny, runtime=cli).embed(queries)) @ map_rows.T
    assert np.abs(found - expected).max() < 1e-5
    gaps = np.diff(-np.sort(-expected, 1), axis=1)     # ranks more than 1e-5 apart stay put
    separated = np.all(np.abs(gaps) > 1e-5, axis=1)
    assert separated.any()
    np.testing.assert_array_equal(np.argsort(-found, 1)[separated],
                                  np.argsort(-expected, 1)[separated])


def test_runner_kinds_follow_the_config(tiny) -> None:
    assert isinstance(backbone(tiny).runner, TorchRunner)
    assert backbone(tiny, runtime='torch-bf16').runner.bf16
    runner = backbone(tiny, runtime='onnx-int8').runner
    assert isinstance(runner, OnnxRunner) and runner.path.name.endswith('.int8.onnx')
    runner = backbone(tiny, runtime='openvino-fp32').runner
    assert isinstance(runner, OpenVinoRunner) and runner.path.name.endswith('.fp32.onnx')
    runner = backbone(tiny, runtime='openvino-int8').runner
    assert isinstance(runner, OpenVinoRunner)
    assert runner.path.name.endswith(f'.int8-town1-{CALIBRATION_COUNT}.xml')
    assert runner.path.with_suffix('.bin').is_file()


def test_onnx_runtime_threads_wait_without_spinning(tiny) -> None:
    from aesvc_vpr.backbone.runtime.runners import ORT_SPINNING

    options = backbone(tiny, runtime='onnx-fp32').runner.session.get_session_options()
    assert options.get_session_config_entry(ORT_SPINNING) == '0'


def test_onnx_files_are_cached_beside_the_weights_and_keyed(tiny) -> None:
    first = backbone(tiny, runtime='onnx-fp32').runner.path
    weights = load_weights(tiny.hf_dir, tiny_arch(tiny.registers))
    assert first.parent == tiny.hf_dir.resolve() / 'aesvc_vpr_onnx'
    assert weights.fingerprint[:16] in first.name and '-224-cls-' in first.name
    stamp = first.stat().st_mtime_ns
    assert backbone(tiny, runtime='onnx-fp32').runner.path == first
    assert first.stat().st_mtime_ns == stamp, 'a cached export is reused, not rewritten'
    others = {backbone(tiny, runtime='onnx-fp32', input_size=322).runner.path,
              backbone(tiny, runtime='onnx-fp32', descriptor='gem').runner.path}
    assert len(others | {first}) == 3
    assert not list(first.parent.glob('*.tmp*')), 'no temporary files are left behind'


def test_onnx_cache_falls_back_when_beside_is_unusable(tiny, tmp_path) -> None:
    folder = tmp_path / 'weights'
    folder.mkdir()
    meta = folder / 'tiny.pth'
    meta.write_bytes(tiny.meta_path.read_bytes())
    (folder / 'aesvc_vpr_onnx').write_text('a file where the cache folder would go')
    weights = load_weights(meta, tiny_arch(tiny.registers))
    bb = DinoV2Backbone(BackboneConfig(model_name='tiny_dinov2', runtime='onnx-fp32'), weights)
    assert bb.runner.path.parent == cache_root() / 'onnx'


def test_weights_free_model_exports_to_the_user_cache() -> None:
    weights = random_weights(tiny_arch(False), seed=1)
    bb = DinoV2Backbone(BackboneConfig(model_name='tiny_dinov2', runtime='onnx-int8'), weights)
    assert bb.runner.path.parent == cache_root() / 'onnx'
    assert bb.embed(images(2)).shape == (2, WIDTH)


def write_images(folder, count: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images(count, seed)):
        assert cv2.imwrite(str(folder / f'{i:02d}.png'), image[:, :, ::-1])


def test_openvino_int8_is_keyed_by_its_calibration_images(tiny, tmp_path) -> None:
    town = backbone(tiny, runtime='openvino-int8').runner.path
    write_images(tmp_path / 'calib', 5, seed=3)
    (tmp_path / 'calib' / 'notes.txt').write_text('not an image')
    own = backbone(tiny, runtime='openvino-int8', calibration_images=str(tmp_path / 'calib'))
    assert own.runner.path != town and own.runner.path.parent == town.parent
    assert own.embed(images(3)).shape == (3, WIDTH)
    stamp = own.runner.path.stat().st_mtime_ns
    again = backbone(tiny, runtime='openvino-int8', calibration_images=str(tmp_path / 'calib'))
    assert again.runner.path == own.runner.path
    assert own.runner.path.stat().st_mtime_ns == stamp, 'a cached int8 model is reused'
    write_images(tmp_path / 'calib' / 'more', 2, seed=4)
    changed = backbone(tiny, runtime='openvino-int8', calibration_images=str(tmp_path / 'calib'))
    assert changed.runner.path not in (own.runner.path, town)
    assert not list(town.parent.glob('.*tmp*')), 'no temporary files are left behind'


def test_calibration_folder_problems_are_backbone_errors(tmp_path) -> None:
    with pytest.raises(BackboneError, match='needs calibration images'):
        calibration_set('')   # the backbone layer renders no default of its own
    with pytest.raises(BackboneError, match='not a folder'):
        calibration_set(str(tmp_path / 'missing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BackboneError, match='no image files'):
        calibration_set(str(tmp_path / 'empty'))
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'a.jpg').write_bytes(b'not a jpeg')
    with pytest.raises(BackboneError, match='none of the 1 images'):
        calibration_set(str(tmp_path / 'broken')).images()


def test_calibration_picks_spread_images_and_renders_town_views(tmp_path) -> None:
    write_images(tmp_path / 'many', 10, seed=5)
    chosen = calibration_set(str(tmp_path / 'many'), count=4)
    assert [p.name for p in chosen.files] == ['00.png', '03.png', '06.png', '09.png']
    source = images(10, seed=5)
    for got, index in zip(chosen.images(), (0, 3, 6, 9), strict=True):
        assert np.array_equal(got, source[index]), 'PNG round trip keeps every pixel'
    assert calibration_set('', town_calibration(3)).tag == town_calibration(3).tag
    views = calibration_set('', town_calibration(3)).images()
    assert len(views) == 3 and all(v.shape == (240, 320, 3) and v.dtype == np.uint8
                                   for v in views)
    assert min(float(v.std()) for v in views) > 5.0, 'views show a street, not a flat colour'
    assert not np.array_equal(views[0], views[1])


def test_truncated_openvino_model_is_a_backbone_error(tiny) -> None:
    path = backbone(tiny, runtime='openvino-int8').runner.path
    weights = path.with_suffix('.bin')
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BackboneError, match='delete it to build it again'):
        backbone(tiny, runtime='openvino-int8')


def test_openvino_and_nncf_send_no_usage_statistics(tmp_path) -> None:
    # a fresh interpreter: pytest itself silences NNCF, and imports are once per process
    script = textwrap.dedent("""
        from aesvc_vpr.backbone.runtime.openvino import import_openvino
        import_openvino()
        import nncf.telemetry.wrapper as nncf_telemetry
        import openvino.tools.ovc.telemetry_utils as ov_telemetry
        print(ov_telemetry.tm.__name__, type(nncf_telemetry.telemetry).__name__)
    """)
    env = {**os.environ, 'HOME': str(tmp_path), 'CI': 'false'}
    env.pop('NNCF_CI', None)
    out = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    assert out[0] == 'openvino.tools.ovc.telemetry_stub'
    assert out[1] != 'NNCFTelemetry'
    assert not (tmp_path / 'intel').exists(), 'no client id or consent file is written'
