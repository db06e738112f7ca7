"""Without a terminal the CLI writes no progress bars and no faiss loader chatter."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest
from replay_scene import make_scene, Scene

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp('quiet'), places=24, queries=6)


def _run(args: list[str], log: Path) -> str:
    """Run ``aesvc-vpr`` with stderr going to a file, as a job writing its log would."""
    with open(log, 'w') as stderr:
        code = subprocess.run([sys.executable, '-m', 'aesvc_vpr', *args], stderr=stderr,
                              stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              env={**os.environ, 'PYTHONPATH': str(REPO)}, check=False,
                              timeout=600).returncode
    assert code == 0, log.read_text()
    return log.read_text()


def test_eval_and_bag_eval_logs_hold_no_bars_and_no_faiss_loader_lines(tmp_path, scene):
    logs = [
        _run(['build-map', str(scene.dataset), str(tmp_path / 'map'), '--model', 'patchgrid'],
             tmp_path / 'build.log'),
        _run(['eval', str(scene.dataset), str(scene.map_root), '--model', 'patchgrid',
              '--json', str(tmp_path / 'eval.json'), '--plot', str(tmp_path / 'eval.png')],
             tmp_path / 'eval.log'),
        _run(['bag-eval', '--map', str(scene.map_root), '--bag', str(scene.bag), '--out',
              str(tmp_path / 'out')], tmp_path / 'bag_eval.log'),
    ]
    for text in logs:
        assert '\r' not in text, 'a progress bar was written to a log file'
        assert 'faiss.loader' not in text
    # the INFO lines that matter are still there, one per stage
    assert 'INFO aesvc_vpr.retrieval.mapbuild' in logs[0]
