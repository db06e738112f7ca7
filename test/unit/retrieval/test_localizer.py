"""Localizer: the core the node, replay and loop closure share."""

from __future__ import annotations

from map_samples import textured_image, write_route
import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.config import BackboneConfig, HeadConfig, MatchConfig, SearchConfig, TrainConfig
from aesvc_vpr.errors import HeadError, MapError
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localization, Localizer, Match
from aesvc_vpr.retrieval.mapbuild import build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase

COUNT = 24


@pytest.fixture(scope='module')
def mapdb(tmp_path_factory):
    root = tmp_path_factory.mktemp('loc')
    route = write_route(root / 'images', COUNT, seed=3)
    return build_map(route, root / 'map', PatchGridBackbone(), progress=False)


@pytest.fixture(scope='module')
def headed_map(tmp_path_factory, mapdb):
    root = tmp_path_factory.mktemp('headed')
    route = write_route(root / 'images', COUNT, seed=3)
    return build_map(route, root / 'map', PatchGridBackbone(), progress=False,
                     train=(HeadConfig(latent_dim=16, prefix_sizes=(8, 16)),
                            TrainConfig(epochs=1, batch_size=8, patience=1)))


def _query(i: int) -> np.ndarray:
    """Map image i, darker and with a little noise: still the same place."""
    image = textured_image(3 * 100000 + i).astype(np.int16)
    noise = np.random.default_rng(i).integers(-6, 7, image.shape)
    return np.clip(image * 0.8 + noise, 0, 255).astype(np.uint8)


def test_localize_finds_the_place(mapdb):
    localizer = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=128),
                          MatchConfig(top_k=3))
    result = localizer.localize(_query(7), 1234)
    assert isinstance(result, Localization) and result.stamp_ns == 1234
    assert len(result.matches) == 3 and isinstance(result.matches[0], Match)
    best = result.matches[0]
    assert best.index == 7
    assert (best.easting, best.northing, best.yaw) == (*mapdb.utm[7], 0.0)
    assert best.score > result.matches[1].score
    assert result.compute_s == result.embed_s + result.search_s
    assert result.embed_s >= 0 and result.search_s >= 0


def test_batch_search_equals_single_localize(mapdb):
    localizer = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=64),
                          MatchConfig(top_k=5))
    images = [_query(i) for i in (0, 5, 11)]
    full = localizer.embed(images)
    assert full.shape == (3, PatchGridBackbone.dim) and full.dtype == np.float32
    batch = localizer.search(full, [10, 20, 30])
    assert [r.stamp_ns for r in batch] == [10, 20, 30]
    for image, result in zip(images, batch):
        single = localizer.localize(image, 0)
        assert [m.index for m in single.matches] == [m.index for m in result.matches]
        assert result.embed_s == 0.0
    with pytest.raises(MapError, match='2 stamps'):
        localizer.search(full, [1, 2])


def test_set_prefix_dim_reindexes_from_stored_embeddings(mapdb):
    localizer = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=256),
                          MatchConfig(top_k=4))
    full = localizer.embed([_query(3)])
    localizer.set_prefix_dim(16)
    assert localizer.prefix_dim == 16 and localizer.search_cfg.prefix_dim == 16
    _, expected = PrefixIndex(mapdb.embeddings, 16).search(full, 4)
    assert [m.index for m in localizer.search(full, [0])[0].matches] == expected[0].tolist()
    with pytest.raises(MapError, match=r'outside 1\.\.384'):
        localizer.set_prefix_dim(385)
    assert localizer.prefix_dim == 16          # a refused size leaves the index alone


def test_with_head(headed_map):
    from aesvc_vpr.head.projector import Projector
    projector = Projector.load(headed_map.head_file)
    localizer = Localizer(Encoder(PatchGridBackbone(), projector), headed_map,
                          SearchConfig(prefix_dim=8), MatchConfig(top_k=2))
    assert localizer.embed([_query(1)]).shape == (1, 16)
    assert len(localizer.localize(_query(1), 5).matches) == 2
    with pytest.raises(HeadError, match='outside 1..16'):
        localizer.set_prefix_dim(17)
    with pytest.raises(MapError, match='configured head is'):
        Localizer(Encoder(PatchGridBackbone()), headed_map, SearchConfig(prefix_dim=8),
                  MatchConfig())


def test_from_config_uses_the_maps_head(headed_map):
    localizer = Localizer.from_config(BackboneConfig(model_name='patchgrid'), '',
                                      str(headed_map.root), SearchConfig(prefix_dim=16),
                                      MatchConfig(top_k=1))
    assert localizer.projector is not None
    assert localizer.projector.fingerprint == headed_map.head_fingerprint
    full = localizer.embed([_query(9)])
    _, expected = PrefixIndex(headed_map.embeddings, 16).search(full, 1)
    assert localizer.localize(_query(9), 0).matches[0].index == expected[0, 0]


def test_other_backbone_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    other = MapDatabase.write(tmp_path / 'map', rng.standard_normal((5, 384)),
                              np.zeros((5, 2)), '17T', backbone_name='vit_small_patch14_dinov2',
                              backbone_fingerprint='0' * 64)
    with pytest.raises(MapError, match="built with backbone 'vit_small_patch14_dinov2'"):
        Localizer(Encoder(PatchGridBackbone()), other, SearchConfig(), MatchConfig())
