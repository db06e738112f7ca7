"""Mode 2's ROS-free half: node answers -> map rows, dropped frames, the node command line."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from aesvc_vpr.bags.groundtruth import GroundTruth, PoseTrack
from aesvc_vpr.bags.queries import QueryPlan
from aesvc_vpr.errors import ReplayError, VprError
from aesvc_vpr.replay.live import (frames_from_outputs, node_params, NodeOutput, NodeProcess,
                                   PlayConfig, PlayLog)
from aesvc_vpr.replay.report import score_replay

# two rows share a position with different headings (as Pittsburgh's places do)
MAP_UTM = np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 0.0], [100.0, 0.0]])
MAP_YAW = np.array([0.0, 0.5, -2.0, math.nan])


def _plan(stamps: list[int], xs: list[float]) -> QueryPlan:
    count = len(stamps)
    truth = GroundTruth(np.array(stamps, np.int64), np.column_stack([xs, np.zeros(count)]),
                        np.zeros(count), np.ones(count, bool))
    track = PoseTrack(np.array(stamps, np.int64), truth.xy, truth.yaw, 'map')
    return QueryPlan('/cam', 'sensor_msgs/msg/Image', '/gt', 'nav_msgs/msg/Odometry', track,
                     truth)


def _answer(stamp: int, rows: list[int], yaws: list[float], scores: list[float],
            received_s: float) -> NodeOutput:
    return NodeOutput(stamp, MAP_UTM[rows], np.array(yaws), np.array(scores, np.float32),
                      received_s)


def test_answers_map_back_to_rows_and_dropped_frames_are_misses():
    plan = _plan([10, 20, 30], [0.0, 50.0, 100.0])
    play = PlayLog(sent_s={10: 1.0, 20: 2.0, 30: 3.0})
    play.outputs[10] = _answer(10, [0, 1], [0.0, 0.5], [0.9, 0.4], 1.25)
    # both rows at (50, 0): the yaw of each pose picks the row; NaN map yaw is published as 0
    play.outputs[20] = _answer(20, [2, 1, 3], [-2.0, 0.5, 0.0], [0.8, 0.7, 0.1], 2.5)
    frames = frames_from_outputs(plan, play, MAP_UTM, MAP_YAW, top_k=3)
    assert frames.indices.tolist() == [[0, 1, -1], [2, 1, 3], [-1, -1, -1]]
    assert frames.answered.tolist() == [True, True, False]
    np.testing.assert_allclose(frames.latency_s[:2], [0.25, 0.5])
    assert play.dropped == [30]
    scores = score_replay(frames, MAP_UTM, 25.0, recall_at=(1,))
    assert scores.recall[1] == pytest.approx(2 / 3)            # the dropped frame is a miss
    assert scores.queries - scores.answered == 1


def test_answers_in_the_local_map_frame_get_the_origin_added_back():
    far = MAP_UTM + [585_512.37, 4_000_700.29]           # a real UTM map, cm positions
    origin = (586_000.0, 4_001_000.0)                    # its origin, as ~/map_origin says
    plan = _plan([10], [0.0])
    play = PlayLog(sent_s={10: 1.0}, origin_utm=origin)
    play.outputs[10] = NodeOutput(10, far[[3, 2, 0]] - origin, np.array([0.0, -2.0, 0.0]),
                                  np.array([0.9, 0.5, 0.1], np.float32), 1.5)
    frames = frames_from_outputs(plan, play, far, MAP_YAW, top_k=3)
    assert frames.indices.tolist() == [[3, 2, 0]]      # exact float64 matches, no tolerance
    play.origin_utm = (0.0, 0.0)                         # local positions taken for UTM
    with pytest.raises(VprError, match='not in this map'):
        frames_from_outputs(plan, play, far, MAP_YAW, top_k=3)


def test_an_answer_from_another_map_is_an_error():
    plan = _plan([10], [0.0])
    play = PlayLog(sent_s={10: 1.0})
    play.outputs[10] = NodeOutput(10, np.array([[7.0, 7.0]]), np.zeros(1),
                                  np.ones(1, np.float32), 1.1)
    with pytest.raises(VprError, match='not in this map'):
        frames_from_outputs(plan, play, MAP_UTM, MAP_YAW, top_k=1)


def test_node_command_line_quotes_strings_and_passes_overrides_through():
    cfg = PlayConfig(namespace='robot1')
    params = node_params('/maps/m', '', 'patchgrid', 32, 20)
    command = NodeProcess(cfg, params, ['max_rate_hz:=5.0']).command()
    assert command[:3] == [sys.executable, '-m', 'aesvc_vpr.ros.node']
    assert '__ns:=/robot1' in command and '__node:=vpr_node' in command
    assert "map_path:='/maps/m'" in command and "head_path:=''" in command
    assert 'search.prefix_dim:=32' in command and 'max_rate_hz:=5.0' in command
    assert "filter.mode:='off'" in command      # a replay says which matches it scores
    assert cfg.topic('image') == '/robot1/image'
    assert cfg.topic('~/candidates') == '/robot1/vpr_node/candidates'
    assert PlayConfig(namespace='').topic('image/compressed') == '/image/compressed'
    with pytest.raises(ReplayError, match='name:=value'):
        NodeProcess(cfg, params, ['max_rate_hz=5'])
    with pytest.raises(ReplayError, match='rate'):
        PlayConfig(rate=0.0)


def test_filtered_answers_score_the_place_match_and_keep_the_frames_own_ranking():
    plan = _plan([10, 20, 30], [0.0, 50.0, 100.0])
    play = PlayLog(sent_s={10: 1.0, 20: 2.0, 30: 3.0})
    play.outputs[10] = _answer(10, [0, 1], [0.0, 0.5], [0.9, 0.4], 1.25)
    play.outputs[20] = _answer(20, [0, 1], [0.0, 0.5], [0.8, 0.7], 2.5)
    play.outputs[30] = _answer(30, [0, 1], [0.0, 0.5], [0.6, 0.3], 3.5)
    # the filter's estimates: row 1 (in the frame's ranking, wrong), row 2 (outside it, right:
    # told from row 1 at the same position by its yaw), none at 30 (below match.min_score)
    play.estimates[10] = _answer(10, [1], [0.5], [math.nan], 1.2)
    play.estimates[20] = _answer(20, [2], [-2.0], [math.nan], 2.4)
    frames = frames_from_outputs(plan, play, MAP_UTM, MAP_YAW, top_k=2, estimates=True)
    assert frames.indices.tolist() == [[1, -1], [2, -1], [-1, -1]]
    assert frames.raw_indices.tolist() == [[0, 1], [0, 1], [0, 1]]
    # its cosine from the frame's ranking, else the k-th cosine (an upper bound)
    np.testing.assert_allclose(frames.scores[:2, 0], [0.4, 0.7], rtol=1e-6)
    assert frames.answered.all()
    scores = score_replay(frames, MAP_UTM, 25.0, recall_at=(1,))
    assert scores.recall[1] == pytest.approx(1 / 3)   # 10: wrong, 20: right, 30: a miss
