"""The real RealSense T265 recording (kapture sample) in its three forms: ROS 1, sqlite3, MCAP.

Checked against what the files hold independently of our code: the raw rosbags reader for the
odometry, and kapture's own export of the same bag (JPEG frames and a nearest-pose trajectory).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from scipy.spatial.transform import Rotation

from aesvc_vpr.bags.queries import plan_queries, QuerySource
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.images.messages import message_to_rgb

IMAGES = '/camera/fisheye1/image_raw'
ODOM = '/camera/odom/sample'
COUNTS = {'/camera/accel/sample': 6, IMAGES: 3, '/camera/fisheye2/image_raw': 3,
          '/camera/gyro/sample': 19, ODOM: 19}


@pytest.fixture(scope='module')
def t265(shared_data: Path) -> dict[str, Path]:
    root = shared_data / 'rosbag_t265'
    if not root.is_dir():
        pytest.skip(f'T265 sample not found at {root}')
    return {'ros1': root / 'original_ros1' / 'trimmed_locoffice.bag',
            'sqlite3': root / '_DERIVED_rosbag2_sqlite3',
            'mcap': root / '_DERIVED_rosbag2_mcap',
            'kapture': root / 'kapture_reference_ros_kapture' / 'sensors'}


def _frames(bag: Path) -> list[tuple[int, np.ndarray]]:
    with BagSet([bag]) as bags:
        assert {t.name: t.count for t in bags.topics.values()} == COUNTS
        assert bags.topics[IMAGES].msgtype == 'sensor_msgs/msg/Image'
        msgs = list(bags.messages([IMAGES]))
    assert {m.msg.encoding for m in msgs} == {'mono8'}
    return [(m.stamp_ns, message_to_rgb(m.msg)) for m in msgs]


def test_mono8_fisheye_frames_decode_identically_in_all_three_forms(t265):
    forms = {name: _frames(t265[name]) for name in ('ros1', 'sqlite3', 'mcap')}
    reference = forms['ros1']
    assert len(reference) == 3
    for name, frames in forms.items():
        assert [s for s, _ in frames] == [s for s, _ in reference], name
        for (_, rgb), (_, ref) in zip(frames, reference):
            assert rgb.shape == (800, 848, 3) and rgb.dtype == np.uint8
            np.testing.assert_array_equal(rgb, ref, err_msg=name)
    # kapture exported the same frames as JPEG: equal up to JPEG loss, and the right way up
    for i, (_, rgb) in enumerate(reference):
        jpeg = cv2.imread(str(t265['kapture'] / 'records_data' / 'cam001' /
                              f'frame_{i + 1:09d}.jpg'), cv2.IMREAD_GRAYSCALE)
        assert np.abs(rgb[:, :, 0].astype(np.int16) - jpeg).mean() < 3.0
        assert (rgb[:, :, 0] == rgb[:, :, 2]).all()                 # grey stays grey


@pytest.mark.parametrize('form', ['ros1', 'sqlite3', 'mcap'])
def test_odometry_gives_ground_truth_at_the_image_stamps(t265, form):
    with BagSet([t265[form]]) as bags:
        plan = plan_queries(bags, QuerySource((str(t265[form]),), IMAGES, ODOM, max_gap_s=0.1))
    # the first frame (10 ms before the first odometry message) is not extrapolated
    assert plan.truth.valid.tolist() == [False, True, True]
    assert plan.track.frame == 'camera_odom_frame' and len(plan.track.stamps_ns) == 19
    # independent reference: the raw rosbags reader and a linear interpolation by hand
    with AnyReader([t265[form]]) as reader:
        conns = [c for c in reader.connections if c.topic == ODOM]
        odom = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(conns)]
    stamps = np.array([o.header.stamp.sec * 10**9 + o.header.stamp.nanosec for o in odom])
    xy = np.array([[o.pose.pose.position.x, o.pose.pose.position.y] for o in odom])
    for row in (1, 2):
        t = plan.truth.stamps_ns[row]
        hi = int(np.searchsorted(stamps, t))
        w = (t - stamps[hi - 1]) / (stamps[hi] - stamps[hi - 1])
        np.testing.assert_allclose(plan.truth.xy[row], (1 - w) * xy[hi - 1] + w * xy[hi],
                                   atol=1e-9)
    # kapture's export took the nearest odometry pose; ours interpolates: within 1 mm here.
    # kapture stores world->camera with camera axes: position = -R^T t, x_odom = z, y_odom = -x
    kapture = _kapture_positions(t265['kapture'] / 'trajectories.txt')
    np.testing.assert_array_equal(plan.truth.stamps_ns, sorted(kapture))
    for row in (1, 2):
        np.testing.assert_allclose(plan.truth.xy[row], kapture[plan.truth.stamps_ns[row]],
                                   atol=1e-3)


def _kapture_positions(path: Path) -> dict[int, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith('#') or not line.strip():
            continue
        fields = [f.strip() for f in line.split(',')]
        qw, qx, qy, qz, tx, ty, tz = map(float, fields[2:9])
        centre = -Rotation.from_quat([qx, qy, qz, qw]).inv().apply([tx, ty, tz])
        out[int(fields[0])] = np.array([centre[2], -centre[0]])
    return out


@pytest.mark.parametrize('form', ['sqlite3', 'mcap'])
def test_bare_storage_files_and_a_crash_cut_mcap_read(t265, form, tmp_path):
    storage = next(p for p in t265[form].iterdir() if p.suffix in ('.db3', '.mcap'))
    bare = tmp_path / storage.name                # copied alone, without metadata.yaml
    bare.write_bytes(storage.read_bytes())
    reference = _frames(t265['ros1'])
    frames = _frames(bare)
    assert [s for s, _ in frames] == [s for s, _ in reference]
    for (_, rgb), (_, ref) in zip(frames, reference):
        np.testing.assert_array_equal(rgb, ref)
    if form == 'mcap':
        cut = tmp_path / 'cut.mcap'
        data = storage.read_bytes()
        cut.write_bytes(data[:int(len(data) * 0.9)])     # the recorder died before the footer
        with BagSet([cut]) as bags:
            read = list(bags.messages([IMAGES, ODOM]))
        images = [m for m in read if m.topic == IMAGES]
        assert 0 < len(read) < 22 and len(images) >= 1
        np.testing.assert_array_equal(message_to_rgb(images[0].msg), reference[0][1])
