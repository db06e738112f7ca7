"""A map and head built with one ONNX model refuse another, and accept the same file renamed."""

from __future__ import annotations

import shutil

import dinov2_tiny
from map_samples import write_route
from onnx_tiny import export, TinyNet
import pytest

from aesvc_vpr.config import (BackboneConfig, HeadConfig, MatchConfig, OnnxConfig, SearchConfig,
                              TrainConfig)
from aesvc_vpr.errors import BackboneError, HeadError, MapError
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localizer
from aesvc_vpr.retrieval.mapbuild import build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase

isolated_caches = dinov2_tiny.isolated_caches   # autouse fixture
HEAD = HeadConfig(latent_dim=8, prefix_sizes=(4, 8))
TRAIN = TrainConfig(epochs=1, teacher_epochs=1, batch_size=4, patience=1, seed=0)


def cfg(path, **onnx) -> BackboneConfig:
    return BackboneConfig(model_name='onnx', weights=str(path), runtime='onnx-fp32',
                          onnx=OnnxConfig(input_size=32, **onnx))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """Build a map with a trained head from tiny ONNX model A; model B lies beside it."""
    root = tmp_path_factory.mktemp('identity')
    model_a = export(TinyNet('vector', seed=0), root / 'a.onnx')
    model_b = export(TinyNet('vector', seed=1), root / 'b.onnx')
    route = write_route(root / 'images', 24)
    encoder = Encoder.load(cfg(model_a))
    build_map(route, root / 'map', encoder.backbone, train=(HEAD, TRAIN), progress=False)
    return root, model_a, model_b


def test_the_map_stores_the_models_content_name(built) -> None:
    root, model_a, _ = built
    mapdb = MapDatabase.load(root / 'map')
    backbone = Encoder.load(cfg(model_a)).backbone
    assert mapdb.backbone_name == backbone.name and backbone.name.startswith('onnx:')
    assert mapdb.backbone_fingerprint == backbone.fingerprint


def test_another_model_is_refused_by_map_and_head(built) -> None:
    root, _, model_b = built
    other = Encoder.load(cfg(model_b))
    with pytest.raises(MapError, match=r"built with backbone 'onnx:[0-9a-f]{16}'.*configured "
                                       r"backbone is 'onnx:[0-9a-f]{16}'"):
        MapDatabase.load(root / 'map', other.backbone)
    head_file = MapDatabase.load(root / 'map').head_file
    with pytest.raises(HeadError, match='does not fit backbone'):
        other.with_head(head_file)


def test_other_preprocessing_of_the_same_model_is_refused(built) -> None:
    root, model_a, _ = built
    with pytest.raises(MapError, match='built with backbone'):
        MapDatabase.load(root / 'map', Encoder.load(cfg(model_a, resize='crop')).backbone)


def test_the_same_file_renamed_and_the_pinned_name_localize(built, tmp_path) -> None:
    root, model_a, model_b = built
    renamed = shutil.copy(model_a, tmp_path / 'renamed.onnx')
    pinned = MapDatabase.load(root / 'map').backbone_name
    for backbone_cfg in (cfg(renamed), BackboneConfig(
            model_name=pinned, weights=str(model_a), runtime='onnx-fp32',
            onnx=OnnxConfig(input_size=32))):
        localizer = Localizer.from_config(backbone_cfg, '', str(root / 'map'),
                                          SearchConfig(prefix_dim=8), MatchConfig())
        assert localizer.encoder.projector is not None
    with pytest.raises(BackboneError, match='is not the model'):
        Localizer.from_config(BackboneConfig(model_name=pinned, weights=str(model_b),
                                             runtime='onnx-fp32'), '', str(root / 'map'),
                              SearchConfig(prefix_dim=8), MatchConfig())
