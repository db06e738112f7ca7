"""Bad input and unwritable outputs end a command with one clear line, before the work is done."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bag_samples import header, pose_stamped, random_rgb, ROS2, write_ros2
import numpy as np
import pytest
from replay_scene import make_scene, ORIGIN, Scene

from aesvc_vpr.cli import main
from aesvc_vpr.data.datasets import load_dataset

S = 1_000_000_000


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp('scene'), places=12, queries=6)


def _one_error_line(capsys, code: int) -> str:
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


def _a_file(tmp_path: Path) -> Path:
    """Make a regular file: nothing can be created below it (works as root, unlike chmod)."""
    blocker = tmp_path / 'blocker'
    blocker.write_text('not a folder')
    return blocker


def test_eval_checks_its_output_files_before_the_work(tmp_path, scene, capsys):
    code = main(['eval', str(scene.dataset), str(scene.map_root), '--model', 'patchgrid',
                 '--json', str(_a_file(tmp_path) / 'eval.json'), '--plot',
                 str(tmp_path / 'eval.png'), '--no-pca'])
    line = _one_error_line(capsys, code)
    assert '--json' in line and 'cannot write there' in line
    assert not (tmp_path / 'eval.png').exists()


def test_an_unwritable_map_directory_is_one_line(tmp_path, scene, capsys):
    target = _a_file(tmp_path) / 'map'
    code = main(['build-map', str(scene.dataset), str(target), '--model', 'patchgrid'])
    assert 'cannot write the map directory' in _one_error_line(capsys, code)
    locked = tmp_path / 'map'
    (locked / '.lock').mkdir(parents=True)       # the lock file cannot be opened for writing
    code = main(['build-map', str(scene.dataset), str(locked), '--model', 'patchgrid'])
    assert 'cannot write the map directory' in _one_error_line(capsys, code)


@pytest.mark.parametrize('mode', ['localization', 'loop_closure'])
def test_bag_eval_checks_out_before_reading_the_bag(tmp_path, scene, capsys, mode):
    code = main(['bag-eval', '--mode', mode, '--map', str(scene.map_root), '--bag',
                 str(scene.bag), '--out', str(_a_file(tmp_path) / 'report')])
    line = _one_error_line(capsys, code)
    assert '--out' in line and 'cannot write the report there' in line


def test_an_empty_mat_file_is_one_line(tmp_path, capsys):
    (tmp_path / 'empty.mat').write_bytes(b'')
    code = main(['build-map', str(tmp_path / 'empty.mat'), str(tmp_path / 'map')])
    assert 'cannot read as a MATLAB v5 file' in _one_error_line(capsys, code)


def test_a_random_bytes_bag_is_one_line(tmp_path, capsys):
    bag = tmp_path / 'noise.bag'
    bag.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    code = main(['bag-eval', '--bag', str(bag), '--list-topics'])
    assert 'cannot open the bag' in _one_error_line(capsys, code)


def test_a_csv_with_a_byte_order_mark_reads(tmp_path):
    (tmp_path / 'a.png').write_bytes(b'')
    text = 'path,easting,northing,zone,set\na.png,1.0,2.0,17T,database\na.png,1,2,17T,query\n'
    (tmp_path / 'bom.csv').write_bytes(b'\xef\xbb\xbf' + text.encode())
    dataset = load_dataset(tmp_path / 'bom.csv')
    assert len(dataset.database) == len(dataset.queries) == 1


def _bad_image(stamp_ns: int, kind: str) -> tuple[str, str, int, object]:
    msgtype = 'sensor_msgs/msg/Image'
    make = ROS2.types[msgtype]
    rgb = random_rgb(np.random.default_rng(stamp_ns % 1000), 24, 32)
    fields = {'height': 24, 'width': 32, 'encoding': 'rgb8', 'is_bigendian': 0, 'step': 96,
              'data': rgb.reshape(-1)}
    if kind == 'depth':
        fields.update(encoding='32FC1', step=128, data=np.zeros(24 * 128, np.uint8))
    elif kind == 'unknown':
        fields.update(encoding='rgb9')
    elif kind == 'step':
        fields.update(step=50)
    elif kind == 'zero':
        fields.update(height=0, width=0, step=0, data=np.zeros(0, np.uint8))
    return '/cam', msgtype, stamp_ns, make(header=header(stamp_ns, 'camera'), **fields)


def _bag(tmp_path: Path, kinds: list[str]) -> Path:
    t0 = 1_700_000_000 * S
    entries = []
    for i, kind in enumerate(kinds):
        stamp = t0 + i * S
        entries.append(_bad_image(stamp, kind))
        x, y = ORIGIN + [15.0 * i, 0.0]
        entries.append(pose_stamped('/pose', stamp, x, y, 0.0))
    return write_ros2(tmp_path / 'bag', entries)


def test_bag_eval_fails_when_no_frame_is_usable_and_says_why_once(tmp_path, scene, capsys, caplog):
    bag = _bag(tmp_path, ['depth', 'unknown', 'step', 'zero'] * 3)
    with caplog.at_level(logging.WARNING):
        code = main(['bag-eval', '--map', str(scene.map_root), '--bag', str(bag), '--out',
                     str(tmp_path / 'out')])
    line = _one_error_line(capsys, code)
    assert 'none of the 12 images with ground truth on /cam could be used' in line
    for cause in ('3 unsupported encoding', '3 unknown encoding', '3 bad step or size',
                  '3 zero size'):
        assert cause in line
    skipped = [r for r in caplog.records if 'images skipped' in r.getMessage()]
    assert len(skipped) == 4          # one line per cause, not one per frame


def test_bag_eval_counts_unusable_frames_in_its_summary(tmp_path, scene, capsys):
    bag = _bag(tmp_path, ['good', 'depth', 'good', 'good', 'zero', 'good'])
    code = main(['bag-eval', '--map', str(scene.map_root), '--bag', str(bag), '--out',
                 str(tmp_path / 'out')])
    out, _ = capsys.readouterr()
    assert code == 0
    assert ('2 of 6 images with ground truth could not be used and count as misses: '
            '1 unsupported encoding, 1 zero size') in out
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    assert report['parameters']['images_unusable'] == {'unsupported encoding': 1,
                                                       'zero size': 1}
    assert report['answered'] == 4
