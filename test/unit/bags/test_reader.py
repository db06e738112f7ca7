"""Bag reading on real rosbags files: all three formats, merging, topics, damage, custom types."""

from __future__ import annotations

import logging
import re

from bag_samples import (
    header, image, navsatfix, pose_stamped, random_rgb, ROS1, ROS2, write_ros1, write_ros2)
import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore
import utm

from aesvc_vpr.bags.queries import plan_queries, QuerySource
from aesvc_vpr.bags.reader import BagSet, IMAGE_TYPES, POSE_TYPES
from aesvc_vpr.errors import BagError
from aesvc_vpr.images.messages import message_to_rgb


T0 = 1_700_000_000 * 10**9
MS = 10**6


def _trajectory(n: int = 6, seed: int = 0) -> tuple[list, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    rgbs = [random_rgb(rng) for _ in range(n)]
    entries = []
    for i in range(n):
        entries.append(pose_stamped('/gt', T0 + i * 100 * MS, 10.0 * i, -2.0 * i, 0.1 * i))
        entries.append(image('/cam', T0 + i * 100 * MS + 50 * MS, rgbs[i]))
    return entries, rgbs


def _write(kind: str, path, entries):
    if kind == 'ros1':
        return write_ros1(path.with_suffix('.bag'), entries)
    return write_ros2(path, entries, storage=kind)


@pytest.mark.parametrize('kind', ['ros1', 'sqlite3', 'mcap'])
def test_every_format_gives_the_same_messages(tmp_path, kind):
    entries, rgbs = _trajectory()
    bag = _write(kind, tmp_path / 'bag', entries)
    with BagSet([bag]) as bags:
        assert bags.topics['/cam'].msgtype == 'sensor_msgs/msg/Image'
        assert bags.topics['/cam'].count == 6 and bags.topics['/gt'].count == 6
        msgs = list(bags.messages(['/cam']))
    assert [m.stamp_ns for m in msgs] == [T0 + i * 100 * MS + 50 * MS for i in range(6)]
    for msg, rgb in zip(msgs, rgbs):
        np.testing.assert_array_equal(message_to_rgb(msg.msg), rgb)


def test_several_bags_merge_in_time_order_across_formats(tmp_path):
    rng = np.random.default_rng(1)
    even = [image('/cam', T0 + i * MS, random_rgb(rng)) for i in range(0, 10, 2)]
    odd = [image('/cam', T0 + i * MS, random_rgb(rng)) for i in range(1, 10, 2)]
    first = write_ros1(tmp_path / 'even.bag', even)
    second = write_ros2(tmp_path / 'odd', odd, storage='mcap')
    with BagSet([second, first]) as bags:
        assert bags.topics['/cam'].count == 10
        merged = list(bags.messages(['/cam']))
    assert [m.log_ns for m in merged] == [T0 + i * MS for i in range(10)]
    assert [m.bag.name for m in merged[:2]] == ['even.bag', 'odd']


def test_a_storage_file_inside_a_rosbag2_directory_is_accepted(tmp_path):
    entries, _ = _trajectory(2)
    bag = write_ros2(tmp_path / 'b', entries, storage='mcap')
    with BagSet([bag / 'b.mcap']) as bags:
        assert bags.paths == [bag]


def test_missing_topic_lists_the_topics_with_types_and_counts(tmp_path):
    entries, _ = _trajectory(4)
    bag = write_ros2(tmp_path / 'b', entries)
    with BagSet([bag]) as bags, pytest.raises(BagError) as err:
        bags.select_topic('/camera/image_raw', IMAGE_TYPES, 'image')
    text = str(err.value)
    assert "'/camera/image_raw' is not in" in text
    assert re.search(r'\n  /cam\s+sensor_msgs/msg/Image\s+4 msgs', text)
    assert re.search(r'\n  /gt\s+geometry_msgs/msg/PoseStamped\s+4 msgs', text)


def test_wrong_type_and_ambiguous_choice_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    entries = [image('/left', T0, random_rgb(rng)), image('/right', T0, random_rgb(rng)),
               pose_stamped('/gt', T0, 0.0, 0.0, 0.0)]
    bag = write_ros2(tmp_path / 'b', entries)
    with BagSet([bag]) as bags:
        with pytest.raises(BagError, match='has type sensor_msgs/msg/Image; expected one of'):
            bags.select_topic('/left', POSE_TYPES, 'pose')
        with pytest.raises(BagError, match='several image topics.*--image-topic'):
            bags.select_topic('', IMAGE_TYPES, 'image')
        assert bags.select_topic('', POSE_TYPES, 'pose').name == '/gt'


def test_empty_bags_are_refused(tmp_path):
    empty2 = write_ros2(tmp_path / 'empty', [])
    with pytest.raises(BagError, match='the bag is empty'):
        BagSet([empty2]).__enter__()
    empty1 = tmp_path / 'empty.bag'
    empty1.write_bytes(b'')
    with pytest.raises(BagError, match='empty.bag: cannot open the bag.*empty'):
        BagSet([empty1]).__enter__()


@pytest.mark.parametrize('kind', ['ros1', 'sqlite3'])
def test_truncated_bags_are_refused(tmp_path, kind):
    entries, _ = _trajectory(8)
    bag = _write(kind, tmp_path / 'bag', entries)
    data_file = bag if kind == 'ros1' else next(p for p in bag.iterdir() if p.suffix != '.yaml')
    data = data_file.read_bytes()
    data_file.write_bytes(data[:len(data) // 2])
    with pytest.raises(BagError, match='truncated, corrupt or not a bag') as err:
        with BagSet([bag]) as bags:
            list(bags.messages(list(bags.topics)))
    assert str(bag) in str(err.value)


def test_corrupt_mcap_chunk_is_caught_by_the_message_count(tmp_path):
    entries, _ = _trajectory(20)
    bag = write_ros2(tmp_path / 'b', entries, storage='mcap')
    data_file = bag / 'b.mcap'
    data = bytearray(data_file.read_bytes())
    n = len(data)
    data[n // 3:n // 2] = bytes(n // 2 - n // 3)
    data_file.write_bytes(bytes(data))
    with BagSet([bag]) as bags, pytest.raises(BagError) as err:
        list(bags.messages(['/cam', '/gt']))
    assert 'index lists 40 messages' in str(err.value)
    assert 'could be read' in str(err.value)


def test_garbage_and_non_bag_paths_are_refused(tmp_path):
    entries, _ = _trajectory(2)
    bag = write_ros2(tmp_path / 'b', entries, storage='sqlite3')
    (bag / 'b.db3').write_bytes(b'not a database' * 100)
    with pytest.raises(BagError, match='b.db3: file is not a database'):
        BagSet([bag]).__enter__()
    with pytest.raises(BagError, match='no such bag'):
        BagSet([tmp_path / 'nothing'])
    (tmp_path / 'plain').mkdir()
    with pytest.raises(BagError, match='without metadata.yaml or .mcap/.db3 files'):
        BagSet([tmp_path / 'plain'])
    lone = tmp_path / 'lone.mcap'
    lone.write_bytes(b'x')
    with pytest.raises(BagError, match='lone.mcap: no message could be read'):
        BagSet([lone]).__enter__()


CUSTOM = 'acme_msgs/msg/TaggedReading'
CUSTOM_MSG = 'std_msgs/Header header\nstring tag\nfloat64[] values\n'


@pytest.mark.parametrize('kind', ['ros1', 'mcap'])
def test_bag_with_a_custom_message_type_opens(tmp_path, kind):
    stores = {}
    for name, base in (('ros2', ROS2), ('ros1', ROS1)):
        store = Typestore()
        store.register(base.fielddefs)
        store.register(get_types_from_msg(CUSTOM_MSG, CUSTOM))
        stores[name] = store
    custom = stores['ros2'].types[CUSTOM](header=header(T0), tag='door-7',
                                          values=np.array([1.5, -2.0]))
    entries, rgbs = _trajectory(3)
    entries.append(('/acme/reading', CUSTOM, T0 + 10 * MS, custom))
    if kind == 'ros1':
        bag = write_ros1(tmp_path / 'c.bag', entries, stores['ros2'], stores['ros1'])
    else:
        bag = write_ros2(tmp_path / 'c', entries, 'mcap', stores['ros2'])
    # a reader that has never heard of acme_msgs: the definition comes from the bag
    with BagSet([bag]) as bags:
        assert bags.topics['/acme/reading'].msgtype == CUSTOM
        (reading,) = list(bags.messages(['/acme/reading']))
        images = list(bags.messages([bags.select_topic('', IMAGE_TYPES, 'image').name]))
    assert reading.msg.tag == 'door-7'
    np.testing.assert_array_equal(reading.msg.values, [1.5, -2.0])
    np.testing.assert_array_equal(message_to_rgb(images[-1].msg), rgbs[-1])


def test_navsatfix_becomes_utm(tmp_path):
    rng = np.random.default_rng(3)
    fixes = [(40.4406, -79.9959), (40.4410, -79.9950), (40.4420, -79.9940)]
    entries = [navsatfix('/fix', T0 + i * 100 * MS, lat, lon)
               for i, (lat, lon) in enumerate(fixes)]
    entries.insert(1, navsatfix('/fix', T0 + 50 * MS, 0.0, 0.0, status=-1))  # no fix: ignored
    entries += [image('/cam', T0 + i * 100 * MS, random_rgb(rng)) for i in range(3)]
    entries.append(image('/cam', T0 + 150 * MS, random_rgb(rng)))
    bag = write_ros2(tmp_path / 'gnss', entries)
    with BagSet([bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(bag),)))
    assert plan.pose_type == 'sensor_msgs/msg/NavSatFix'
    assert plan.track.utm_zone == '17T' and plan.track.rejected == 1
    expected = np.array([utm.from_latlon(lat, lon)[:2] for lat, lon in fixes])
    # images in bag order: 0, 100, 150 (between the fixes at 100 and 200) and 200 ms
    np.testing.assert_allclose(plan.truth.xy[[0, 1, 3]], expected, atol=1e-6)
    np.testing.assert_allclose(plan.truth.xy[2], (expected[1] + expected[2]) / 2, atol=1e-6)
    assert np.isnan(plan.truth.yaw).all()                          # a fix has no heading
    with BagSet([bag]) as bags:
        forced = plan_queries(bags, QuerySource((str(bag),), utm_zone='18T'))
    assert forced.track.utm_zone == '18T'
    assert forced.truth.xy[0, 0] < 500_000 - 200_000               # far west of zone 18's centre


def test_images_without_ground_truth_are_counted_and_skipped(tmp_path, caplog):
    rng = np.random.default_rng(4)
    poses = [pose_stamped('/gt', T0 + t * MS, float(t), 0.0, 0.0) for t in (100, 150, 200, 600)]
    # images: before the first pose, bracketed, inside a 400 ms gap, after the last pose
    image_ms = (50, 120, 150, 400, 700)
    entries = poses + [image('/cam', T0 + t * MS, random_rgb(rng)) for t in image_ms]
    bag = write_ros2(tmp_path / 'b', sorted(entries, key=lambda e: e[2]))
    with caplog.at_level(logging.WARNING), BagSet([bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(bag),), max_gap_s=0.1))
    assert plan.truth.valid.tolist() == [False, True, True, False, False]
    assert plan.total == 5 and plan.scored == 2 and plan.truth.skipped == 3
    np.testing.assert_allclose(plan.truth.xy[1:3, 0], [120.0, 150.0])
    assert ('3 of 5 images have no ground truth within 0.1 s and are skipped (1 before the first '
            'pose, 1 after the last, 1 in gaps longer than 0.1 s)') in caplog.text


def test_no_image_with_ground_truth_is_an_error_that_shows_the_clocks(tmp_path):
    rng = np.random.default_rng(5)
    entries = [pose_stamped('/gt', T0 + i * 100 * MS, float(i), 0.0, 0.0) for i in range(3)]
    entries += [image('/cam', 5 * 10**9 + i * 100 * MS, random_rgb(rng)) for i in range(3)]
    bag = write_ros2(tmp_path / 'b', entries)
    with BagSet([bag]) as bags, pytest.raises(BagError) as err:
        plan_queries(bags, QuerySource((str(bag),)))
    assert 'none of the 3 images on /cam has ground truth from /gt' in str(err.value)
    assert 'same clock' in str(err.value)


def test_zero_header_stamp_falls_back_to_bag_time(tmp_path):
    _, _, _, msg = image('/cam', 0, random_rgb(np.random.default_rng(6)))
    bag = write_ros2(tmp_path / 'b', [('/cam', 'sensor_msgs/msg/Image', T0 + 7, msg)])
    with BagSet([bag]) as bags:
        (only,) = list(bags.messages(['/cam']))
    assert only.stamp_ns == T0 + 7 and only.log_ns == T0 + 7


def test_play_messages_interleave_poses_with_images_up_to_the_limit(tmp_path):
    from aesvc_vpr.bags.queries import play_messages

    rng = np.random.default_rng(5)
    entries = []
    for i in range(5):
        entries.append(pose_stamped('/gt', T0 + i * 100 * MS, float(i), 0.0, 0.0))
        entries.append(image('/cam', T0 + i * 100 * MS + 10 * MS, random_rgb(rng)))
    bag = write_ros2(tmp_path / 'odom', entries)
    with BagSet([bag]) as bags:
        plan = plan_queries(bags, QuerySource((str(bag),), limit=3))
        both = [(m.topic, m.stamp_ns) for m in play_messages(bags, plan, poses=True)]
        only = [m.topic for m in play_messages(bags, plan)]
    # bag order, and nothing after the third image (the plan's limit)
    assert both == [(t, T0 + i * 100 * MS + (10 * MS if t == '/cam' else 0))
                    for i in range(3) for t in ('/gt', '/cam')]
    assert only == ['/cam'] * 3
    fixes = [navsatfix('/fix', T0, 40.44, -80.0), image('/cam', T0, random_rgb(rng))]
    gnss = write_ros2(tmp_path / 'gnss', fixes)
    with BagSet([gnss]) as bags:
        plan = plan_queries(bags, QuerySource((str(gnss),)))
        with pytest.raises(BagError, match='cannot be played as odometry'):
            next(play_messages(bags, plan, poses=True))
