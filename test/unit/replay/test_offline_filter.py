"""bag-eval with the sequence filter runs the filter of ``eval --sequence``, frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
from replay_scene import make_scene, Scene

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.bags.queries import plan_queries, QuerySource
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.config import FilterConfig, MatchConfig, RecallConfig, SearchConfig
from aesvc_vpr.evaluation.map_eval import evaluate_map, SequenceOptions
from aesvc_vpr.evaluation.sequence_eval import sequence_stamps
from aesvc_vpr.images.files import read_rgb
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import positives_within, relevance
from aesvc_vpr.replay.offline import path_lengths, replay_bag
from aesvc_vpr.replay.report import single_frame_recall
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localizer
from aesvc_vpr.retrieval.tracking import filter_sequence

DIM = 32
FILTER = FilterConfig(mode='hmm', speed_mps=5.0)


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp('replay_filter'))


def test_filtered_replay_equals_the_filter_over_exact_rankings(scene):
    localizer = Localizer(Encoder(PatchGridBackbone()), scene.mapdb,
                          SearchConfig(prefix_dim=DIM), MatchConfig(top_k=20))
    with BagSet([scene.bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(scene.bag),)))
        frames = replay_bag(localizer, bags, plan, filter_cfg=FILTER)
    queries = PatchGridBackbone().embed([read_rgb(p) for p in scene.queries.paths])
    scores, ranked = PrefixIndex(scene.mapdb.embeddings, DIM).search(queries, 20)
    np.testing.assert_array_equal(frames.raw_indices, ranked)
    best, _ = filter_sequence(scene.mapdb.utm, FILTER, ranked, scores, frames.stamps_ns)
    np.testing.assert_array_equal(frames.indices[:, 0], best)
    assert (best != ranked[:, 0]).any()          # the filter changed something
    raw = single_frame_recall(frames, scene.mapdb.utm, 25.0)
    assert 0.0 < raw['R@1'] < 1.0


def test_eval_sequence_reports_single_and_filtered_recall(scene):
    report = evaluate_map(scene.mapdb, scene.queries, Encoder(PatchGridBackbone()), (DIM,),
                          RecallConfig(), pca=False, progress=False,
                          sequence=SequenceOptions(FILTER, warmup=2))
    rows = report['sequence']['rows']
    assert [(r['method'], r['dim']) for r in rows] == [('raw', DIM)]
    queries = PatchGridBackbone().embed([read_rgb(p) for p in scene.queries.paths])
    scores, ranked = PrefixIndex(scene.mapdb.embeddings, DIM).search(queries, FILTER.top_k)
    positives = positives_within(scene.mapdb.utm, scene.queries.utm, 25.0)
    single = relevance(ranked[:, :1], positives)[2:, 0].mean()
    stamps = sequence_stamps(scene.queries.stamps_ns, 1.0)
    best, _ = filter_sequence(scene.mapdb.utm, FILTER, ranked, scores, stamps)
    filtered = relevance(best[:, None], positives)[2:, 0].mean()
    assert rows[0]['single_recall@1'] == pytest.approx(single)
    assert rows[0]['filtered_recall@1'] == pytest.approx(filtered)


def test_odometry_from_the_pose_topic_drives_the_filter(scene):
    localizer = Localizer(Encoder(PatchGridBackbone()), scene.mapdb,
                          SearchConfig(prefix_dim=DIM), MatchConfig(top_k=20))
    still = FilterConfig(mode='hmm', speed_mps=0.0)
    with BagSet([scene.bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(scene.bag),)))
        frames = replay_bag(localizer, bags, plan, filter_cfg=still, odometry_from_poses=True)
    queries = PatchGridBackbone().embed([read_rgb(p) for p in scene.queries.paths])
    scores, ranked = PrefixIndex(scene.mapdb.embeddings, DIM).search(queries, 20)
    odometer = path_lengths(frames.truth_xy)
    assert odometer[-1] > 0
    best, _ = filter_sequence(scene.mapdb.utm, still, ranked, scores, frames.stamps_ns, odometer)
    np.testing.assert_array_equal(frames.indices[:, 0], best)
    without, _ = filter_sequence(scene.mapdb.utm, still, ranked, scores, frames.stamps_ns)
    assert (best != without).any()        # the odometry moved the belief
