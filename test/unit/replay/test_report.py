"""Replay scoring on a five-query example worked out by hand, and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aesvc_vpr.replay.frames import ReplayFrames
from aesvc_vpr.replay.report import format_table, score_replay, write_report

MAP_UTM = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])


def _frames() -> ReplayFrames:
    # q0 right; q1 wrong at rank 1, right at rank 2; q2 right; q3 has no place within 25 m;
    # q4 was dropped by the node
    return ReplayFrames(
        stamps_ns=np.arange(5, dtype=np.int64),
        truth_xy=np.array([[1.0, 0.0], [100.0, 5.0], [210.0, 0.0], [1000.0, 0.0], [300.0, 0.0]]),
        indices=np.array([[0, 1], [2, 1], [2, 3], [3, 2], [3, 2]], np.int64),
        scores=np.array([[0.9, 0.1], [0.8, 0.7], [0.7, 0.2], [0.6, 0.5], [0.99, 0.1]],
                        np.float32),
        answered=np.array([True, True, True, True, False]),
        latency_s=np.array([0.010, 0.020, 0.030, 0.040, np.nan]),
        latency_kind='compute (embed + search)')


def test_scores_of_the_hand_worked_example():
    scores = score_replay(_frames(), MAP_UTM, radius_m=25.0, recall_at=(1, 2, 5))
    assert scores.recall == pytest.approx({1: 2 / 5, 2: 3 / 5})   # R@5 > 2 results: left out
    assert (scores.queries, scores.answered, scores.with_positive) == (5, 4, 4)
    np.testing.assert_allclose(scores.thresholds, [0.9, 0.8, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_allclose(scores.precision, [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(scores.pr_recall, [0.25, 0.25, 0.5, 0.5])
    assert scores.best_f1 == pytest.approx(4 / 7)
    assert scores.best_f1_threshold == pytest.approx(0.7)
    assert scores.recall_at_full_precision == pytest.approx(0.25)
    assert scores.top1_correct.tolist() == [True, False, True, False, False]
    latency = scores.latency_ms['compute (embed + search)']
    assert latency['count'] == 4 and latency['median'] == pytest.approx(25.0)


def test_equal_scores_share_one_threshold():
    frames = _frames()
    frames.scores[:4, 0] = [0.8, 0.8, 0.5, 0.5]
    scores = score_replay(frames, MAP_UTM, radius_m=25.0, recall_at=(1,))
    np.testing.assert_allclose(scores.thresholds, [0.8, 0.5])
    np.testing.assert_allclose(scores.precision, [0.5, 0.5])
    assert scores.recall_at_full_precision == 0.0


def test_report_files(tmp_path):
    frames = _frames()
    scores = score_replay(frames, MAP_UTM, radius_m=25.0, recall_at=(1, 2))
    paths = write_report(tmp_path / 'out', scores, frames, MAP_UTM, {'radius_m': 25.0},
                         {'mode': 'test'})
    report = json.loads(paths['report'].read_text())
    assert report['parameters'] == {'radius_m': 25.0} and report['mode'] == 'test'
    assert report['recall'] == pytest.approx({'R@1': 0.4, 'R@2': 0.6})
    assert report['dropped'] == 1 and report['git_commit']
    assert 'numpy' in report['versions'] and 'rosbags' in report['versions']
    rows = paths['frames'].read_text().splitlines()
    assert len(rows) == 6 and rows[2].split(',')[6] == '0'          # q1's top-1 is wrong
    for name in ('trajectory', 'pr_curve', 'latency'):
        assert paths[name].read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = format_table(scores, 'example')
    assert 'R@1    40.00' in table and 'dropped 1' in table
