"""Mode 2 through real rclpy and a real vpr_node, compared frame by frame with mode 1."""

from __future__ import annotations

import json

from image_samples import place_image
import numpy as np
import pytest
from replay_scene import make_scene

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.bags.queries import plan_queries, query_messages, QuerySource
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.bags.writer import BagFrame, BagLayout, write_query_bag
from aesvc_vpr.cli import main as cli_main
from aesvc_vpr.config import MatchConfig, SearchConfig
from aesvc_vpr.replay.live import frames_from_outputs, node_params, NodeProcess, PlayConfig
from aesvc_vpr.replay.offline import replay_bag
from aesvc_vpr.replay.report import score_replay
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localizer
from aesvc_vpr.ros.bag_player import play_bag

TOP_K = 20
PREFIX = 64


def _offline(mapdb, bag):
    localizer = Localizer(Encoder(PatchGridBackbone()), mapdb, SearchConfig(prefix_dim=PREFIX),
                          MatchConfig(top_k=TOP_K))
    with BagSet([bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(bag),)))
        return plan, replay_bag(localizer, bags, plan)


def _assert_same_matches(live, offline, dropped):
    answered = live.answered
    assert (~answered).sum() == len(dropped)
    np.testing.assert_array_equal(live.indices[answered], offline.indices[answered])
    np.testing.assert_allclose(live.scores[answered], offline.scores[answered], atol=1e-6)


def test_spawned_node_agrees_with_offline_replay_frame_by_frame(tmp_path):
    scene = make_scene(tmp_path, places=20, queries=12, seed=7)
    plan, offline = _offline(scene.mapdb, scene.bag)
    # 10 Hz in the bag, played at half speed: far below what PatchGrid needs per frame
    cfg = PlayConfig(rate=0.5, namespace='/bag_play_test', startup_timeout_s=60.0, settle_s=5.0)
    # two workers: answers may leave out of order, and each must still land on its own image
    params = {**node_params(str(scene.map_root), '', 'patchgrid', PREFIX, TOP_K), 'workers': 2}
    with BagSet([scene.bag]) as bags, NodeProcess(cfg, params) as node:
        images = (msg for _, msg in query_messages(bags, plan))
        played = play_bag(images, plan.total, cfg, compressed=False, node=node)
    live = frames_from_outputs(plan, played, scene.mapdb.utm, scene.mapdb.yaw, TOP_K)
    assert len(played.sent_s) == 12
    assert played.dropped == []                 # slow enough: every frame answered
    _assert_same_matches(live, offline, played.dropped)
    # the node's latched ~/map_origin arrived: its local positions plus it are the map's UTM
    assert played.origin_utm == scene.mapdb.origin_utm != (0.0, 0.0)
    for out in played.outputs.values():
        np.testing.assert_array_equal(out.xy + played.origin_utm, scene.mapdb.utm[out.rows])
    assert live.indices[:, 0].tolist() == offline.indices[:, 0].tolist()
    # and therefore the same scores through the same scoring code
    live_scores = score_replay(live, scene.mapdb.utm, 25.0)
    assert live_scores.recall == score_replay(offline, scene.mapdb.utm, 25.0).recall
    assert np.isfinite(live.latency_s).all() and (live.latency_s > 0).all()


def test_bag_play_cli_talks_to_a_running_node(compressed_harness, small_map, tmp_path, capsys):
    # queries of the conftest map's places, recorded as a CompressedImage (PNG) bag
    rng = np.random.default_rng(3)
    frames = [BagFrame(1_700_000_000 * 10**9 + i * 10**8,
                       np.clip(place_image(p).astype(int) + rng.integers(-9, 10, (120, 160, 3)),
                               0, 255).astype(np.uint8),
                       *small_map.utm[p], float(small_map.yaw[p]))
              for i, p in enumerate([3, 7, 1, 10, 5, 0])]
    bag = tmp_path / 'bag'
    write_query_bag(bag, frames, BagLayout(image_format='png'))
    out = tmp_path / 'report'
    code = cli_main(['bag-play', '--map', str(small_map.root), '--bag', str(bag),
                     '--no-spawn-node', '--namespace', '', '--rate', '0.5', '--top-k', '5',
                     '--settle-s', '3', '--out', str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'published 6 images, the node answered 6, dropped 0' in printed
    report = json.loads((out / 'report.json').read_text())
    assert report['dropped_frames'] == 0 and report['parameters']['spawned'] is False
    assert report['parameters']['image_type'] == 'sensor_msgs/msg/CompressedImage'
    # the harness node runs top_k 5 at prefix 64: compare with the core at the same settings
    localizer = Localizer(Encoder(PatchGridBackbone()), small_map, SearchConfig(prefix_dim=64),
                          MatchConfig(top_k=5))
    with BagSet([bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(bag),)))
        offline = replay_bag(localizer, bags, plan)
    expected = score_replay(offline, small_map.utm, 25.0, recall_at=(1, 5))
    assert report['recall'] == pytest.approx({f'R@{n}': r for n, r in expected.recall.items()})
    assert expected.recall[1] == 1.0           # each query is a noisy copy of its place
    rows = (out / 'frames.csv').read_text().splitlines()[1:]
    assert [int(r.split(',')[4]) for r in rows] == [3, 7, 1, 10, 5, 0]


def test_bag_play_feeds_odometry_and_scores_the_filter_like_bag_eval(tmp_path):
    # the live node with filter.mode hmm hears the bag's odometry on <ns>/odom: its
    # ~/place_match equals the offline filter driven by the same path lengths, frame by frame
    from aesvc_vpr.config import FilterConfig
    from aesvc_vpr.replay.report import single_frame_recall

    scene = make_scene(tmp_path, places=20, queries=12, seed=7)
    filter_cfg = FilterConfig(mode='hmm', speed_mps=5.0)
    localizer = Localizer(Encoder(PatchGridBackbone()), scene.mapdb,
                          SearchConfig(prefix_dim=PREFIX), MatchConfig(top_k=TOP_K))
    with BagSet([scene.bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(scene.bag),)))
        offline = replay_bag(localizer, bags, plan, filter_cfg=filter_cfg,
                             odometry_from_poses=True)
        speed_only = replay_bag(localizer, bags, plan, filter_cfg=filter_cfg)
    # the odometry matters here: without it the filter's estimates differ
    assert (offline.indices[:, 0] != speed_only.indices[:, 0]).any()
    out = tmp_path / 'report'
    code = cli_main(['bag-play', '--map', str(scene.map_root), '--bag', str(scene.bag),
                     '--namespace', '/bag_play_filter', '--rate', '0.5', '--top-k', str(TOP_K),
                     '--prefix-dim', str(PREFIX), '--filter', 'hmm', '--speed-mps', '5',
                     '--filter-odometry', '--settle-s', '5', '--out', str(out),
                     '--startup-timeout-s', '60'])
    assert code == 0
    report = json.loads((out / 'report.json').read_text())
    assert report['dropped_frames'] == 0
    rows = [line.split(',') for line in (out / 'frames.csv').read_text().splitlines()[1:]]
    assert [int(r[4]) for r in rows] == offline.indices[:, 0].tolist()
    assert report['single_frame_recall'] == pytest.approx(
        single_frame_recall(offline, scene.mapdb.utm, 25.0))
    assert report['parameters']['node_parameters']['filter.mode'] == 'hmm'
