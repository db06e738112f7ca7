"""Round trip: make-bag from a generated dataset; replaying it = `aesvc-vpr eval` on its images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from replay_scene import make_scene, Scene

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.bags.queries import plan_queries, QuerySource
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.cli import main as cli_main
from aesvc_vpr.config import MatchConfig, RecallConfig, SearchConfig
from aesvc_vpr.evaluation.map_eval import evaluate_map
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.replay.offline import replay_bag
from aesvc_vpr.replay.report import score_replay
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localizer

DIMS = (32, 64)


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp('replay'))


def _replay(scene: Scene, dim: int, bag: Path | None = None):
    localizer = Localizer(Encoder(PatchGridBackbone()), scene.mapdb, SearchConfig(prefix_dim=dim),
                          MatchConfig(top_k=20))
    with BagSet([bag or scene.bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(bag or scene.bag),)))
        frames = replay_bag(localizer, bags, plan)
    return plan, frames


def test_bag_replay_gives_the_recall_of_eval_on_the_same_images(scene):
    backbone = PatchGridBackbone()
    report = evaluate_map(scene.mapdb, scene.queries, Encoder(backbone), DIMS, RecallConfig(),
                          pca=False, progress=False)
    eval_recall = {row['dim']: row['recall'] for row in report['rows'] if row['method'] == 'raw'}
    seen = set()
    for dim in DIMS:
        plan, frames = _replay(scene, dim)
        assert plan.total == plan.scored == len(scene.queries)
        np.testing.assert_allclose(frames.truth_xy, scene.queries.utm, atol=1e-6)
        scores = score_replay(frames, scene.mapdb.utm, 25.0)
        assert {str(n): r for n, r in scores.recall.items()} == pytest.approx(eval_recall[dim])
        seen.add(round(scores.recall[1], 6))
        # frame by frame: the same ranking as an exact search of the dataset's image files
        queries = backbone.embed([read_rgb(p) for p in scene.queries.paths])
        _, expected = PrefixIndex(scene.mapdb.embeddings, dim).search(queries, 20)
        np.testing.assert_array_equal(frames.indices, expected)
    assert len(seen) == len(DIMS)          # the sizes differ, so equality above means something
    assert 0.5 < min(seen) and max(seen) < 1.0


def test_jpeg_bag_decodes_close_to_the_png_images(scene, tmp_path):
    jpeg_bag = tmp_path / 'jpeg_bag'
    assert cli_main(['make-bag', '--dataset', str(scene.dataset), '--out', str(jpeg_bag),
                     '--image-format', 'jpeg', '--storage', 'sqlite3']) == 0
    plan, frames = _replay(scene, 64, jpeg_bag)
    assert plan.image_type == 'sensor_msgs/msg/CompressedImage'
    _, lossless = _replay(scene, 64)
    # JPEG changes pixels, not places: nearly all top-1 matches stay
    assert (frames.indices[:, 0] == lossless.indices[:, 0]).mean() >= 0.8


def test_bag_eval_cli_writes_table_json_and_plots(scene, tmp_path, capsys):
    out = tmp_path / 'report'
    code = cli_main(['bag-eval', '--map', str(scene.map_root), '--bag', str(scene.bag),
                     '--prefix-dim', '64', '--out', str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    _, frames = _replay(scene, 64)
    expected = score_replay(frames, scene.mapdb.utm, 25.0)
    assert f'R@1   {100 * expected.recall[1]:6.2f}' in printed
    report = json.loads((out / 'report.json').read_text())
    assert report['recall']['R@1'] == pytest.approx(expected.recall[1])
    assert report['parameters']['prefix_dim'] == 64
    assert report['parameters']['backbone'] == 'patchgrid'
    assert report['mode'].startswith('offline') and report['git_commit']
    assert set(report['latency_ms']) >= {'embed', 'search'}
    for name in ('trajectory.png', 'pr_curve.png', 'latency.png'):
        assert (out / name).read_bytes()[:4] == b'\x89PNG'


def test_bag_eval_cli_refuses_a_wrong_topic_before_loading_a_model(scene, tmp_path, capsys):
    code = cli_main(['bag-eval', '--map', str(scene.map_root), '--bag', str(scene.bag),
                     '--image-topic', '/front/image', '--out', str(tmp_path / 'r')])
    assert code == 1
    err = capsys.readouterr().err
    assert "image topic '/front/image' is not in" in err and '/camera/image_raw' in err
