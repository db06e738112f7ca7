"""The README's main job, shrunk: the same code path end to end, with a real node process."""

from __future__ import annotations

import json
from pathlib import Path

from aesvc_vpr.cli.demo import DemoConfig, run_demo

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def test_reduced_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    cfg = DemoConfig(out=tmp_path / 'demo', n_db=160, n_query=40, size=160, difficulty=0.3,
                     dims=(16, 32), rate=4.0, epochs=10, model_name='patchgrid')
    summary = run_demo(cfg)

    printed = capsys.readouterr().out
    assert 'patchgrid' in printed and str(cfg.out.resolve()) in printed

    # chance is the mean fraction of the map within 25 m of a query (about 2-5 % here)
    chance = summary['chance_recall_at_1']
    assert 0 < chance < 0.1
    best_r1 = max(row['recall']['1'] for row in summary['offline']['rows'])
    assert best_r1 > 5 * chance, (best_r1, chance)

    node = summary['node']
    assert 'error' not in node, node
    assert node['answered'] >= 0.9 * node['queries'] and node['queries'] == 40
    assert node['recall']['R@5'] > 5 * chance

    files = {name: Path(path) for name, path in summary['files'].items()}
    assert json.loads((cfg.out / 'summary.json').read_text())['node'] == node
    assert json.loads(files['node_report'].read_text())['answered'] == node['answered']
    assert json.loads(files['offline_report'].read_text())['queries'] == 40
    assert files['trajectory_png'].read_bytes()[:8] == PNG_MAGIC
    assert (files['map'] / 'map.json').is_file() and Path(files['head']).is_file()
