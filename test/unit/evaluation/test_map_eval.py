"""Evaluation: the report against a brute-force reference, and the build-map + eval commands."""

from __future__ import annotations

import json

from map_samples import textured_image, write_route
import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.cli import main
from aesvc_vpr.config import RecallConfig
from aesvc_vpr.data.datasets import GeoImageSet, load_dataset, write_folder_layout
from aesvc_vpr.evaluation.map_eval import (evaluate_map, evaluate_representations, format_table,
                                           plot_recall, write_json)
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.mapbuild import build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase


def _ranked(database, queries, dim, k):
    xb = database[:, :dim] / np.linalg.norm(database[:, :dim], axis=1, keepdims=True)
    xq = queries[:, :dim] / np.linalg.norm(queries[:, :dim], axis=1, keepdims=True)
    return np.argsort(-(xq @ xb.T), axis=1, kind='stable')[:, :k]


def test_report_matches_brute_force():
    rng = np.random.default_rng(5)
    database_utm = np.stack([np.arange(200) * 5.0, np.zeros(200)], axis=1)
    truth = rng.integers(0, 200, 60)
    query_utm = database_utm[truth] + rng.normal(0, 3, (60, 2))
    database = rng.standard_normal((200, 32)).astype(np.float32)
    queries = database[truth] + rng.normal(0, 0.9, (60, 32)).astype(np.float32)
    cfg = RecallConfig(radius_m=12.0, recall_at=(1, 5, 10), map_at=4)
    report = evaluate_representations(database_utm, query_utm, {
                                      'emb': (database, queries)}, [4, 16], cfg)
    rows = [(r['method'], r['dim']) for r in report['rows']]
    assert rows == [('emb', 4), ('emb', 16), ('emb', 32)]
    assert report['queries'] == 60 and report['database'] == 200
    for row in report['rows']:
        ranked = _ranked(database, queries, row['dim'], 10)
        dist = np.linalg.norm(query_utm[:, None] - database_utm[None], axis=2)
        relevant = np.take_along_axis(dist <= 12.0, ranked, axis=1)
        for n in (1, 5, 10):
            assert row['recall'][str(n)] == pytest.approx(relevant[:, :n].any(axis=1).mean())
        positives = (dist <= 12.0).sum(axis=1)
        precision = np.cumsum(relevant[:, :4], axis=1) / np.arange(1, 5)
        ap = (precision * relevant[:, :4]).sum(axis=1) / np.minimum(4, positives)
        assert row['map_at_k'] == pytest.approx(ap.mean())
    assert report['rows'][-1]['recall']['10'] > report['rows'][0]['recall']['10']
    table = format_table(report)
    assert 'R@1' in table and 'mAP@4' in table and '60 queries' in table


def test_outputs(tmp_path):
    report = {'protocol': {'radius_m': 25.0, 'recall_at': [1, 5], 'map_at': 4},
              'database': 3, 'queries': 2, 'queries_without_positives': 0,
              'median_positives': 1.0,
              'rows': [{'method': m, 'dim': d, 'recall': {'1': 0.5, '5': 1.0}, 'map_at_k': 0.5}
                       for m in ('head', 'raw') for d in (8, 16)]}
    write_json(report, tmp_path / 'r.json')
    assert json.loads((tmp_path / 'r.json').read_text()) == report
    plot_recall(report, tmp_path / 'r.png')
    assert (tmp_path / 'r.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def _perturbed(route: GeoImageSet, rows) -> list[np.ndarray]:
    out = []
    for i in rows:
        image = textured_image(100000 + i).astype(np.float32) * 0.85 + 10
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope='module')
def town(tmp_path_factory):
    """Write a folder-layout dataset: 30 places 10 m apart, 8 queries re-imaging some."""
    root = tmp_path_factory.mktemp('evaltown')
    route = write_route(root / 'source', 30, seed=1)
    rows = [2, 5, 9, 14, 17, 21, 26, 29]
    queries = route.subset(rows)
    queries = GeoImageSet(queries.paths, queries.utm + [2.0, 1.0], route.utm_zone)
    write_folder_layout(root / 'ds', route, queries, query_images=_perturbed(route, rows))
    return root / 'ds'


def test_evaluate_map_rows(tmp_path, town):
    data = load_dataset(town)
    mapdb = build_map(data.database, tmp_path / 'map', PatchGridBackbone(), progress=False)
    report = evaluate_map(mapdb, data.queries, Encoder(PatchGridBackbone()), [8, 64],
                          RecallConfig(), progress=False)
    methods = [(r['method'], r['dim']) for r in report['rows']]
    # PCA of 30 rows keeps 29 components, so its 64 row does not exist
    assert methods == [('raw', 8), ('raw', 64), ('raw', 384), ('pca', 8), ('pca', 29),
                       ('pcaw', 8), ('pcaw', 29)]
    raw_full = report['rows'][2]
    pcaw = [r for r in report['rows'] if r['method'] == 'pcaw']
    # whitened on the map's own rows: centred (30 rows in 29 dimensions form a near simplex)
    assert pcaw and all(abs(r['mean_cos']) < 0.05 for r in pcaw)
    assert raw_full['mean_cos'] > 0.2              # raw patchgrid rows share a direction
    assert raw_full['recall']['1'] == 1.0          # every query re-images its own place
    assert report['queries_failed'] == [] and report['queries_without_positives'] == 0


def test_build_map_and_eval_commands(tmp_path, town, capsys):
    assert main(['build-map', str(town), str(tmp_path / 'map'), '--model', 'patchgrid',
                 '--chunk-size', '8']) == 0
    assert '30 entries (0 images failed)' in capsys.readouterr().out
    assert main(['eval', str(town), str(tmp_path / 'map'), '--model', 'patchgrid',
                 '--sizes', '16,32', '--json', str(tmp_path / 'e.json'),
                 '--plot', str(tmp_path / 'e.png')]) == 0
    out = capsys.readouterr().out
    assert 'R@20' in out and 'mAP@4' in out and '8 queries' in out
    report = json.loads((tmp_path / 'e.json').read_text())
    assert {r['method'] for r in report['rows']} == {'raw', 'pca', 'pcaw'}
    assert 'mean cos' in out and 'Var*d' in out
    assert (tmp_path / 'e.png').stat().st_size > 0
    # a map from another backbone is refused with one clear line
    mapdb = MapDatabase.load(tmp_path / 'map')
    MapDatabase.write(tmp_path / 'other', mapdb.raw, mapdb.utm, mapdb.utm_zone,
                      backbone_name='vit_small_patch14_dinov2', backbone_fingerprint='0' * 64)
    assert main(['eval', str(town), str(tmp_path / 'other'), '--model', 'patchgrid']) == 1
    assert "built with backbone 'vit_small_patch14_dinov2'" in capsys.readouterr().err
