"""``bag-eval --mode loop_closure`` on a rosbag2 of the town's looping drive, written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aesvc_vpr.bags.writer import BagFrame, write_query_bag
from aesvc_vpr.cli import main
from aesvc_vpr.cli._loop_closure import loop_config
from aesvc_vpr.data.synthetic_route import town_loop_route
from aesvc_vpr.errors import ConfigError


@pytest.fixture(scope='module')
def loop_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write the looping town drive as a bag: raw images + ground-truth Odometry, same stamps."""
    route = town_loop_route()
    path = tmp_path_factory.mktemp('bags') / 'town_loop'
    write_query_bag(path, [BagFrame(int(s), image, float(p[0]), float(p[1]), float(p[2]))
                           for s, p, image in zip(route.stamps_ns, route.poses, route.images)])
    return path


def test_bag_eval_loop_closure_mode(loop_bag: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / 'report'
    code = main(['bag-eval', '--mode', 'loop_closure', '--bag', str(loop_bag), '--backbone',
                 'patchgrid', '--radius-m', '10', '--out', str(out),
                 '--loop', 'geometric_check=orb', '--loop', 'consistency_k=1'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'recall at 100 % precision' in printed
    report = json.loads((out / 'loop_report.json').read_text())
    assert report['parameters']['loop_closure']['geometric_check'] == 'orb'
    assert report['parameters']['prefix_dim'] is None       # no head: the full embedding
    assert report['precision'] == 1.0 and report['recall'] >= 0.5
    assert report['n_frames'] == 174 and report['n_loopable'] > 20
    assert len(report['pr_curve']) == 21 and report['latency_ms']['embed_median'] > 0
    rows = (out / 'loop_closures.csv').read_text().splitlines()
    assert rows[0] == 't_query_ns,t_match_ns,score,inliers,true'
    assert len(rows) - 1 == report['n_published'] and all(r.endswith(',1') for r in rows[1:])


def test_loop_settings_from_the_command_line() -> None:
    cfg = loop_config(['min_score=0.8', 'consistency_k=2', 'geometric_check=sift'])
    assert (cfg.min_score, cfg.consistency_k, cfg.geometric_check) == (0.8, 2, 'sift')
    with pytest.raises(ConfigError, match='FIELD=VALUE'):
        loop_config(['radius=3'])
    with pytest.raises(ConfigError, match='not a valid int'):
        loop_config(['consistency_k=two'])
    with pytest.raises(ConfigError, match='consistency_k must be >= 1'):
        loop_config(['consistency_k=0'])
