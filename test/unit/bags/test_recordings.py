"""Recordings as a crash or a plain copy leaves them: no metadata.yaml, an MCAP cut short."""

from __future__ import annotations

import logging
from pathlib import Path
import shutil

from bag_samples import image, pose_stamped, random_rgb, write_ros2
import numpy as np
import pytest

from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.errors import BagError
from aesvc_vpr.images.messages import message_to_rgb

T0 = 1_700_000_000 * 10**9
MS = 10**6
COUNT = 24


def _recording(folder: Path, storage: str, count: int = COUNT, side: int = 256):
    """Images large enough that rosbags' MCAP writer closes a chunk every ~5 messages."""
    rng = np.random.default_rng(0)
    rgbs = [random_rgb(rng, side, side) for _ in range(count)]
    entries = []
    for i in range(count):
        entries.append(pose_stamped('/gt', T0 + i * 100 * MS, float(i), 0.0, 0.0))
        entries.append(image('/cam', T0 + i * 100 * MS + 50 * MS, rgbs[i]))
    return write_ros2(folder, entries, storage=storage), rgbs


def _read(paths) -> list:
    with BagSet(paths) as bags:
        return list(bags.messages(['/cam', '/gt']))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_recording_without_metadata_yaml_reads_like_the_complete_one(tmp_path, storage):
    bag, rgbs = _recording(tmp_path / 'bag', storage, count=6, side=32)
    expected = _read([bag])
    (bag / 'metadata.yaml').unlink()
    storage_file = next(bag.iterdir())
    for given in (bag, storage_file):          # the folder, or the bare file
        got = _read([given])
        assert [(m.topic, m.stamp_ns) for m in got] == [(m.topic, m.stamp_ns) for m in expected]
    bare = tmp_path / f'copied{storage_file.suffix}'
    shutil.copyfile(storage_file, bare)         # a lone file, as Foxglove or a user copies it
    got = _read([bare])
    assert len(got) == 12
    np.testing.assert_array_equal(message_to_rgb(got[-1].msg), rgbs[-1])


def test_a_truncated_mcap_is_read_up_to_the_damage(tmp_path, caplog):
    bag, rgbs = _recording(tmp_path / 'bag', 'mcap')
    storage_file = bag / 'bag.mcap'
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[:len(data) * 6 // 10])     # the recorder died
    (bag / 'metadata.yaml').unlink()                          # written only at a clean stop
    with caplog.at_level(logging.WARNING):
        with BagSet([bag]) as bags:
            counts = {name: t.count for name, t in bags.topics.items()}
            got = list(bags.messages(['/cam', '/gt']))
    images = [m for m in got if m.topic == '/cam']
    assert 0 < len(images) < COUNT and counts['/cam'] == len(images)
    assert len(got) == sum(counts.values())
    # what was read is exactly the start of the recording
    for i, msg in enumerate(images):
        assert msg.stamp_ns == T0 + i * 100 * MS + 50 * MS
        np.testing.assert_array_equal(message_to_rgb(msg.msg), rgbs[i])
    warning = next(r.getMessage() for r in caplog.records if 'damaged MCAP' in r.getMessage())
    assert f'read {len(got)} messages' in warning and 'bytes after that are lost' in warning


def test_an_mcap_cut_before_its_first_message_is_refused(tmp_path):
    bag, _ = _recording(tmp_path / 'bag', 'mcap', count=2, side=16)
    storage_file = bag / 'bag.mcap'
    storage_file.write_bytes(storage_file.read_bytes()[:40])
    with pytest.raises(BagError, match='no message could be read before the damage'):
        BagSet([bag]).__enter__()
