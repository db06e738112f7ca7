"""The synthetic town: layout, routes, ray-caster geometry, appearance, and make_town's outputs."""

from __future__ import annotations

import hashlib
import json
import math

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
import scipy.io

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.cli import main as cli_main
from aesvc_vpr.data.datasets import read_dbstruct, read_folder
from aesvc_vpr.data.town import appearance, make_town, routes
from aesvc_vpr.data.town.layout import blocks_for_length, build_town, TownSpec
from aesvc_vpr.data.town.render import Camera, render
from aesvc_vpr.errors import DatasetError

ORIGIN = (584500.0, 4476900.0)
MAT_FIELDS = ('whichSet', 'dbImageFns', 'utmDb', 'qImageFns', 'utmQ', 'numImages', 'numQueries',
              'posDistThr', 'posDistSqThr', 'nonTrivPosDistSqThr')


@pytest.fixture(scope='module')
def town():
    return build_town(TownSpec(seed=3, blocks=(3, 2)))


@pytest.fixture(scope='module')
def survey(town):
    circuit = routes.survey_route(town, np.random.default_rng(0))
    length = routes.route_length_m(town, circuit)
    return routes.sample_route(town, circuit, 60, length / 60)


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    """Make a small town through the real pool (2 workers), writers and bag."""
    out = tmp_path_factory.mktemp('town')
    return make_town(out, n_db=250, n_query=50, size=224, difficulty=0.5, seed=5, workers=2)


def _visible(town, poses, i):
    return set(render(town, *poses.xy_m[i], poses.yaw_rad[i]).visible().tolist())


def test_facades_line_the_streets(town):
    assert np.allclose(np.linalg.norm(town.normal, axis=1), 1.0)
    # a step from any facade along its normal lands on a street (near a centreline)
    mid = (town.start_m + town.end_m) / 2 + 3.0 * town.normal
    dx = np.min(np.abs(mid[:, :1] - town.street_x_m[None, :]), axis=1)
    dy = np.min(np.abs(mid[:, 1:] - town.street_y_m[None, :]), axis=1)
    assert (np.minimum(dx, dy) < town.spec.facade_offset_m).all()
    low, high = town.spec.building_width_m
    assert town.length_m.min() >= low - 1e-9 and town.length_m.max() <= low + high
    assert len(town.atlas) == 3 and town.atlas[0].dtype == np.uint8
    assert blocks_for_length(10.0) == (1, 1) and blocks_for_length(2500.0) == (4, 3)


def test_town_spec_and_knobs_are_validated():
    with pytest.raises(DatasetError, match='blocks'):
        TownSpec(blocks=(0, 2))
    with pytest.raises(DatasetError, match='difficulty'):
        appearance.check_difficulty(2.5)
    with pytest.raises(DatasetError, match='textures'):
        render(build_town(TownSpec(blocks=(1, 1)), textures=False), 0.0, 0.0, 0.0)


def test_render_sizes_dtypes_and_depth(town):
    x, y = town.street_x_m[1] + 1.8, town.street_y_m[0] + 30.0
    frame = render(town, x, y, math.pi / 2, Camera(width=256, height=224))
    assert frame.rgb.shape == (224, 256, 3) and frame.rgb.dtype == np.float32
    assert 0.0 <= frame.rgb.min() and frame.rgb.max() <= 1.0
    walls = frame.facade_id >= 0
    assert walls.mean() > 0.2 and np.isfinite(frame.depth_m[walls]).all()
    assert np.isinf(frame.depth_m[0]).any()                       # sky in the top row
    assert frame.facade_id.max() < town.n_facades
    image, _ = appearance.apply_condition(frame, appearance.SURVEY, np.random.default_rng(0))
    assert image.shape == (224, 256, 3) and image.dtype == np.uint8


def test_same_place_shares_facades_far_places_do_not(town, survey):
    visible = [_visible(town, survey, i) for i in range(len(survey))]
    query = appearance.perturb_query(survey, 1.0, np.random.default_rng(1))
    assert np.linalg.norm(query.xy_m - survey.xy_m, axis=1).max() > 2.0   # really another lane
    for i in range(len(survey)):
        assert visible[i] & _visible(town, query, i), f'place {i}: no facade in common'
    distance = np.linalg.norm(survey.xy_m[:, None] - survey.xy_m[None], axis=2)
    far = np.argwhere(distance > 200.0)
    assert len(far) > 100
    for i, j in far:
        assert not visible[i] & visible[j], f'places {i} and {j} ({distance[i, j]:.0f} m apart)'


def test_survey_drives_every_street_both_ways(town):
    circuit = routes.survey_route(town, np.random.default_rng(7))
    edges = list(zip(circuit[:-1], circuit[1:]))
    expected = {(a, b) for a, nbrs in enumerate(routes.neighbours(town)) for b in nbrs}
    assert circuit[0] == circuit[-1]
    assert len(edges) == len(set(edges)) and set(edges) == expected
    assert routes.route_length_m(town, circuit) == pytest.approx(2 * town.street_length_m)


def test_query_route_closes_a_loop(town):
    walk = routes.query_route(town, np.random.default_rng(2), 900.0, 150.0)
    assert routes.route_length_m(town, walk) >= 900.0
    assert all(b in routes.neighbours(town)[a] for a, b in zip(walk[:-1], walk[1:]))
    # it passes its start again and then re-drives its first street in the same direction
    again = [k for k in range(1, len(walk) - 1) if walk[k] == walk[0] and walk[k + 1] == walk[1]]
    assert again


def test_sample_route_spacing_and_errors(town):
    walk = routes.query_route(town, np.random.default_rng(3), 500.0, 100.0)
    poses = routes.sample_route(town, walk, 50, 5.0, lane_m=0.0)
    steps = np.linalg.norm(np.diff(poses.xy_m, axis=0), axis=1)
    assert steps.max() <= 5.0 + 1e-6 and np.median(steps) == pytest.approx(5.0)
    with pytest.raises(DatasetError, match='too short'):
        routes.sample_route(town, walk, 10_000, 5.0)


def test_difficulty_scales_the_changes(survey):
    rng = np.random.default_rng(0)
    assert set(appearance.query_conditions(30, 0.0, rng)) == {appearance.SURVEY}
    same = appearance.perturb_query(survey, 0.0, rng)
    np.testing.assert_allclose(same.xy_m, survey.xy_m)
    hard = appearance.query_conditions(300, 1.0, rng)
    assert np.mean([c.gain for c in hard]) < 0.85
    assert min(c.fog_m for c in hard) < 100.0 and hard[0].noise_sigma > 5.0
    moved = appearance.perturb_query(survey, 1.0, rng)
    jitter = np.degrees((moved.yaw_rad - survey.yaw_rad + np.pi) % (2 * np.pi) - np.pi)
    assert 3.0 < np.std(jitter) < 30.0


def test_make_town_folder_and_mat_parse(generated):
    folder = read_folder(generated.root)
    assert (len(folder.database), len(folder.queries)) == (250, 50)
    assert folder.database.utm_zone == '17T'
    assert np.abs(folder.database.utm - np.array(ORIGIN)).max() < 400.0
    by_name = dict(zip(generated.queries.paths, generated.queries.utm))
    for path, utm_xy in zip(folder.queries.paths, folder.queries.utm):
        np.testing.assert_allclose(utm_xy, by_name[path], atol=0.01)
    lat = float(generated.database.paths[0].split('@')[5])
    assert 40.0 < lat < 41.0                                     # Pittsburgh, from the utm package
    struct = scipy.io.loadmat(str(generated.mat_path))['dbStruct']
    assert struct.dtype.names[:10] == MAT_FIELDS
    fields = struct.item()
    assert fields[2].shape == (2, 250) and fields[4].shape == (2, 50)
    assert float(fields[7].squeeze()) == 25.0 and float(fields[8].squeeze()) == 625.0
    assert float(fields[9].squeeze()) == 100.0
    mat = read_dbstruct(generated.mat_path)
    assert mat.database.paths == generated.database.paths
    np.testing.assert_allclose(mat.queries.utm, generated.queries.utm)
    image = cv2.imread(mat.queries.paths[0])
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8


def test_make_town_truth_and_no_copied_images(generated):
    truth = json.loads(generated.truth_path.read_text())
    assert len(truth['database']) == 250 and len(truth['queries']) == 50
    stamps = np.array([q['stamp_ns'] for q in truth['queries']])
    assert (np.diff(stamps) == 500_000_000).all()
    assert all(q['facades'] for q in truth['queries'])

    def digest(path):
        return hashlib.sha256(cv2.imread(path).tobytes()).hexdigest()
    db = {digest(p) for p in generated.database.paths}
    assert not db & {digest(p) for p in generated.queries.paths}
    # the query run comes back: a frame at least a quarter of the run later, at the same place
    # and heading, and those two frames see the same facades
    xy, yaw = generated.queries.utm, generated.queries.yaw
    revisits = [(i, j) for i in range(50) for j in range(i + 12, 50)
                if np.linalg.norm(xy[i] - xy[j]) < 10.0
                and abs((yaw[i] - yaw[j] + np.pi) % (2 * np.pi) - np.pi) < 0.6]
    assert revisits
    i, j = revisits[0]
    assert set(truth['queries'][i]['facades']) & set(truth['queries'][j]['facades'])


def test_make_town_bag_opens_with_anyreader(generated):
    with AnyReader([generated.bag_path]) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert topics == {'/camera/image_raw': ('sensor_msgs/msg/Image', 50),
                          '/odom': ('nav_msgs/msg/Odometry', 50)}
        image_conn = [c for c in reader.connections if c.topic == '/camera/image_raw']
        odom_conn = [c for c in reader.connections if c.topic == '/odom']
        _, stamp, raw = next(reader.messages(connections=image_conn))
        msg = reader.deserialize(raw, 'sensor_msgs/msg/Image')
        assert (msg.height, msg.width, msg.encoding) == (224, 224, 'rgb8')
        assert stamp == generated.queries.stamps_ns[0]
        poses = [reader.deserialize(r, 'nav_msgs/msg/Odometry').pose.pose.position
                 for _, _, r in reader.messages(connections=odom_conn)]
    np.testing.assert_allclose([(p.x, p.y) for p in poses], generated.queries.utm)


def test_patchgrid_retrieval_is_far_better_than_chance(generated):
    backbone = PatchGridBackbone()

    def embed(paths):
        rows = backbone.embed([cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)
    best = np.argmax(embed(generated.queries.paths) @ embed(generated.database.paths).T, axis=1)
    within = np.linalg.norm(generated.queries.utm[:, None] - generated.database.utm[None],
                            axis=2) < 25.0
    chance = within.mean()              # a random database image is within 25 m this often
    recall_at_1 = within[np.arange(len(best)), best].mean()
    assert recall_at_1 > max(0.3, 4 * chance), (recall_at_1, chance)


def test_make_town_is_deterministic_and_cli_refuses_to_overwrite(tmp_path, capsys):
    args = ['make-town', '--db', '20', '--queries', '6', '--size', '64', '--seed', '9',
            '--bag-format', 'sqlite3', '--bag-images', 'jpeg']
    assert cli_main([*args, '--out', str(tmp_path / 'a'), '--workers', '1']) == 0
    assert cli_main([*args, '--out', str(tmp_path / 'b'), '--workers', '2']) == 0
    assert cli_main([*args, '--out', str(tmp_path / 'a'), '--workers', '1']) == 1
    assert '--force' in capsys.readouterr().err
    for split in ('database', 'queries'):
        names_a = sorted(p.name for p in (tmp_path / 'a' / split).iterdir())
        names_b = sorted(p.name for p in (tmp_path / 'b' / split).iterdir())
        assert names_a == names_b
        for name in names_a:
            assert (tmp_path / 'a' / split / name).read_bytes() == \
                (tmp_path / 'b' / split / name).read_bytes()
    truth = [(tmp_path / run / 'truth.json').read_text() for run in ('a', 'b')]
    assert truth[0] == truth[1]
    with AnyReader([tmp_path / 'a' / 'query_bag']) as reader:      # the sqlite3 + jpeg options
        assert {(c.topic, c.msgtype, c.msgcount) for c in reader.connections} == {
            ('/camera/image_raw', 'sensor_msgs/msg/CompressedImage', 6),
            ('/odom', 'nav_msgs/msg/Odometry', 6)}
    assert list((tmp_path / 'a' / 'query_bag').glob('*.db3'))
    other = make_town(tmp_path / 'c', n_db=20, n_query=6, size=64, seed=10, workers=1)
    assert sorted(p.name for p in other.root.joinpath('queries').iterdir()) != \
        sorted(p.name for p in (tmp_path / 'a' / 'queries').iterdir())
