"""Ground truth from TF (--pose-tf PARENT:CHILD): static and moving links chained, interpolated."""

from __future__ import annotations

import json
import math

from bag_samples import header, image, random_rgb, ROS1, ROS2, write_ros1, write_ros2
import cv2
import numpy as np
import pytest
from replay_scene import make_scene, ORIGIN
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore

from aesvc_vpr.bags.queries import plan_queries, QuerySource
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.cli import main
from aesvc_vpr.errors import BagError

S = 1_000_000_000
T0 = 1_700_000_000 * S
TF = 'tf2_msgs/msg/TFMessage'
MAP_ODOM = (100.0, 50.0, 0.5)          # static: x, y, yaw


def _transform(stamp_ns: int, parent: str, child: str, x: float, y: float, yaw: float):
    t = ROS2.types
    return t['geometry_msgs/msg/TransformStamped'](
        header=header(stamp_ns, parent), child_frame_id=child,
        transform=t['geometry_msgs/msg/Transform'](
            translation=t['geometry_msgs/msg/Vector3'](x=x, y=y, z=0.0),
            rotation=t['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=math.sin(yaw / 2),
                                                       w=math.cos(yaw / 2))))


def _tf(topic: str, stamp_ns: int, *transforms):
    return topic, TF, stamp_ns, ROS2.types[TF](transforms=list(transforms))


def _odom_base(t_s: float) -> tuple[float, float, float]:
    """Return the robot in the odom frame: straight at constant speed, turning steadily."""
    return 2.0 * t_s, 0.5 * t_s, 0.3 * t_s


def _map_base(t_s: float) -> tuple[float, float, float]:
    x, y, yaw = _odom_base(t_s)
    ox, oy, oyaw = MAP_ODOM
    return (ox + math.cos(oyaw) * x - math.sin(oyaw) * y,
            oy + math.sin(oyaw) * x + math.cos(oyaw) * y, oyaw + yaw)


def _entries(prefix: str = '') -> list:
    rng = np.random.default_rng(0)
    entries = [_tf('/tf_static', T0, _transform(T0, f'{prefix}map', f'{prefix}odom', *MAP_ODOM),
                   _transform(T0, f'{prefix}base_link', f'{prefix}camera', 0.3, 0.0, 0.0))]
    for i in range(41):                                    # 20 Hz for 2 s
        stamp = T0 + i * S // 20
        moving = _transform(stamp, f'{prefix}odom', f'{prefix}base_link', *_odom_base(i / 20))
        entries.append(_tf('/tf', stamp, moving))
    for k in range(8):                                     # images between TF samples
        entries.append(image('/cam', T0 + 130_000_000 + k * 230_000_000, random_rgb(rng)))
    return entries


def _check_truth(plan) -> None:
    assert plan.pose_topic == 'tf:map->base_link' and plan.scored == 8
    for stamp, xy, yaw in zip(plan.truth.stamps_ns, plan.truth.xy, plan.truth.yaw):
        x, y, expected_yaw = _map_base((stamp - T0) / S)
        assert xy == pytest.approx((x, y), abs=1e-6)
        assert math.remainder(yaw - expected_yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-6)


def test_map_to_base_link_chains_static_and_moving_links(tmp_path):
    bag = write_ros2(tmp_path / 'bag', _entries())
    with BagSet([bag]) as bags:
        _check_truth(plan_queries(bags, QuerySource((str(bag),), pose_tf='map:base_link')))
        # down the tree past base_link: the camera in the odom frame (the lever arm turns
        # between two TF samples, so the image-time interpolation is close, not exact)
        plan = plan_queries(bags, QuerySource((str(bag),), pose_tf='odom:camera'))
        x, y, yaw = _odom_base((plan.truth.stamps_ns[0] - T0) / S)
        assert plan.truth.xy[0] == pytest.approx((x + 0.3 * math.cos(yaw),
                                                  y + 0.3 * math.sin(yaw)), abs=1e-4)
        # evo's spelling, and the inverse direction
        inverse = plan_queries(bags, QuerySource((str(bag),), pose_tf='tf:base_link.map'))
        assert np.isfinite(inverse.truth.xy).all()


def test_a_ros1_bag_with_slashed_frame_ids(tmp_path):
    ros1 = Typestore()
    ros1.register(ROS1.fielddefs)
    ros1.register(get_types_from_msg('geometry_msgs/TransformStamped[] transforms', TF))
    bag = write_ros1(tmp_path / 'tf.bag', _entries('/'), ROS2, ros1)
    with BagSet([bag]) as bags:
        _check_truth(plan_queries(bags, QuerySource((str(bag),), pose_tf='map:base_link')))


def test_missing_frames_and_bad_specs_are_clear_errors(tmp_path):
    bag = write_ros2(tmp_path / 'bag', _entries())
    with BagSet([bag]) as bags:
        with pytest.raises(BagError, match=r"frame 'world' is not in the recording; frames "
                                           r"seen: \['base_link', 'camera', 'map', 'odom'\]"):
            plan_queries(bags, QuerySource((str(bag),), pose_tf='world:base_link'))
    with pytest.raises(BagError, match='expected PARENT:CHILD'):
        QuerySource((str(bag),), pose_tf='map')


def test_bag_eval_with_pose_tf_scores_like_the_pose_topic(tmp_path):
    scene = make_scene(tmp_path / 'scene', places=24, queries=10)
    entries = [_tf('/tf_static', T0, _transform(T0, 'map', 'odom', *ORIGIN, 0.0))]
    for i, (path, utm) in enumerate(zip(scene.queries.paths, scene.queries.utm)):
        stamp = T0 + (i + 1) * S
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        entries.append(image('/camera/image_raw', stamp, rgb))
        x, y = utm - ORIGIN
        for offset in (-20_000_000, 20_000_000):           # mocap at the image, on both sides
            entries.append(_tf('/tf', stamp + offset,
                               _transform(stamp + offset, 'odom', 'base_link', x, y, 0.0)))
    bag = write_ros2(tmp_path / 'tf_bag', entries)
    reports = {}
    for name, args in (('topic', ['--bag', str(scene.bag)]),
                       ('tf', ['--bag', str(bag), '--pose-tf', 'map:base_link'])):
        out = tmp_path / name
        assert main(['bag-eval', '--map', str(scene.map_root), *args, '--out', str(out)]) == 0
        reports[name] = json.loads((out / 'report.json').read_text())
    assert reports['tf']['queries'] == reports['topic']['queries'] == 10
    assert reports['tf']['recall'] == reports['topic']['recall']
    assert reports['tf']['parameters']['pose_topic'] == 'tf:map->base_link'
