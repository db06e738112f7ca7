"""Runtime modes against torch fp32 on a tiny model, and the ONNX export cache."""

from __future__ import annotations

import dinov2_tiny
from dinov2_tiny import images, Tiny, tiny_arch, WIDTH
import numpy as np
import pytest

from aesvc_vpr.backbone import DinoV2Backbone
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.fingerprints import cache_root
from aesvc_vpr.runtimes import MIN_COSINE, OnnxRunner, TorchRunner
from aesvc_vpr.weights import load_weights, random_weights

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture
tiny = dinov2_tiny.tiny                         # each tiny model, per module


def backbone(tiny: Tiny, **cfg) -> DinoV2Backbone:
    return DinoV2Backbone(BackboneConfig(model_name='tiny_dinov2', **cfg),
                          load_weights(tiny.hf_dir, tiny_arch(tiny.registers)))


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize('runtime', ['torch-bf16', 'onnx-fp32', 'onnx-int8'])
def test_runtime_within_its_tolerance_of_fp32(tiny, runtime) -> None:
    batch = images(6)
    reference = backbone(tiny, descriptor='cls+gem', batch_size=4).embed(batch)
    out = backbone(tiny, descriptor='cls+gem', runtime=runtime, batch_size=4).embed(batch)
    assert out.shape == reference.shape == (6, 2 * WIDTH) and out.dtype == np.float32
    for part in (slice(0, WIDTH), slice(WIDTH, 2 * WIDTH)):   # cls and gem separately
        assert row_cosines(out[:, part], reference[:, part]).min() >= MIN_COSINE[runtime]
    if runtime == 'onnx-fp32':
        assert np.abs(out - reference).max() < 1e-4
    else:   # reduced precision really ran: not bit-identical to fp32
        assert np.abs(out - reference).max() > 1e-6


def test_runner_kinds_follow_the_config(tiny) -> None:
    assert isinstance(backbone(tiny).runner, TorchRunner)
    assert backbone(tiny, runtime='torch-bf16').runner.bf16
    runner = backbone(tiny, runtime='onnx-int8').runner
    assert isinstance(runner, OnnxRunner) and runner.path.name.endswith('.int8.onnx')


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
