"""Dataset readers and writers: round trips, the original NetVLAD layout, and error messages."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.io
import utm

from aesvc_vpr.data.datasets import (GeoImageSet, load_dataset, read_csv, read_dbstruct,
                                     read_folder, read_npz, utm_filename, write_dbstruct,
                                     write_folder_layout)
from aesvc_vpr.errors import DatasetError

ZONE = '17T'
ORIGIN = np.array([584500.0, 4476900.0])


def _set(paths, seed=0, yaw=True):
    rng = np.random.default_rng(seed)
    n = len(paths)
    return GeoImageSet(tuple(str(p) for p in paths), ORIGIN + rng.uniform(0, 300, (n, 2)), ZONE,
                       rng.uniform(-math.pi, math.pi, n) if yaw else None,
                       np.arange(n, dtype=np.int64) * 1000)


def test_geo_image_set_validates_and_subsets():
    geo = _set(['a.jpg', 'b.jpg', 'c.jpg'])
    sub = geo.subset([2, 0])
    assert sub.paths == ('c.jpg', 'a.jpg')
    np.testing.assert_array_equal(sub.utm, geo.utm[[2, 0]])
    assert GeoImageSet(('a',), [[1.0, 2.0]]).yaw.shape == (1,)
    assert np.isnan(GeoImageSet(('a',), [[1.0, 2.0]]).yaw[0])
    with pytest.raises(DatasetError, match=r'\(2, 2\)'):
        GeoImageSet(('a', 'b'), np.zeros((3, 2)), source='x')
    with pytest.raises(DatasetError, match='row 1'):
        GeoImageSet(('a', 'b'), [[0.0, 0.0], [np.nan, 1.0]])


def test_dbstruct_round_trip(tmp_path):
    db = _set([tmp_path / 'img' / f'db{i}.jpg' for i in range(5)], 0)
    q = _set([tmp_path / 'img' / 'q' / f'q{i}.jpg' for i in range(3)], 1)
    write_dbstruct(tmp_path / 'town.mat', db, q, tmp_path / 'img', radius_m=10.0)
    got = load_dataset(tmp_path / 'town.mat')
    assert got.database.paths == db.paths and got.queries.paths == q.paths
    np.testing.assert_array_equal(got.database.utm, db.utm)
    np.testing.assert_array_equal(got.queries.utm, q.utm)
    assert got.database.utm_zone == ZONE and got.radius_m == 10.0


def test_dbstruct_netvlad_layout(tmp_path):
    """An original-style file: positional fields, queries under queries_real, zone by name."""
    def cells(names):
        out = np.empty((len(names), 1), dtype=object)
        out[:, 0] = names
        return out
    struct = {'whichSet': 'test', 'dbImageFns': cells(['000/a.jpg', '000/b.jpg']),
              'utmDb': np.array([[1.0, 2.0], [3.0, 4.0]]), 'qImageFns': cells(['000/q.jpg']),
              'utmQ': np.array([[5.0], [6.0]]), 'numImages': 2.0, 'numQueries': 1.0,
              'posDistThr': 25.0, 'posDistSqThr': 625.0, 'nonTrivPosDistSqThr': 100.0}
    scipy.io.savemat(tmp_path / 'pitts30k_test.mat', {'dbStruct': struct})
    got = read_dbstruct(tmp_path / 'pitts30k_test.mat', image_root=tmp_path / 'P')
    assert got.database.paths == (str(tmp_path / 'P/000/a.jpg'), str(tmp_path / 'P/000/b.jpg'))
    assert got.queries.paths == (str(tmp_path / 'P/queries_real/000/q.jpg'),)
    np.testing.assert_array_equal(got.database.utm, [[1.0, 3.0], [2.0, 4.0]])
    np.testing.assert_array_equal(got.queries.utm, [[5.0, 6.0]])
    assert got.database.utm_zone == '17T' and got.radius_m == 25.0


def test_dbstruct_errors_name_file_and_field(tmp_path):
    scipy.io.savemat(tmp_path / 'none.mat', {'other': 1.0})
    with pytest.raises(DatasetError, match=r'none\.mat.*no dbStruct'):
        read_dbstruct(tmp_path / 'none.mat')
    scipy.io.savemat(tmp_path / 'noq.mat', {'dbStruct': {
        'dbImageFns': np.array(['a.jpg'], dtype=object), 'utmDb': np.zeros((2, 1)),
        'qImageFns': np.array(['q.jpg'], dtype=object)}})
    with pytest.raises(DatasetError, match=r"noq\.mat.*'utmQ'"):
        read_dbstruct(tmp_path / 'noq.mat')
    scipy.io.savemat(tmp_path / 'count.mat', {'dbStruct': {
        'dbImageFns': np.array(['a.jpg', 'b.jpg'], dtype=object), 'utmDb': np.zeros((2, 3)),
        'qImageFns': np.array(['q.jpg'], dtype=object), 'utmQ': np.zeros((2, 1))}})
    with pytest.raises(DatasetError, match=r'count\.mat.*dbImageFns has 2 names but utmDb has 3'):
        read_dbstruct(tmp_path / 'count.mat')
    (tmp_path / 'junk.mat').write_bytes(b'not a mat file at all' * 10)
    with pytest.raises(DatasetError, match=r'junk\.mat'):
        load_dataset(tmp_path / 'junk.mat')


def test_npz_and_name_lists(tmp_path):
    np.savez(tmp_path / 'tiny_test.npz', utmDb=np.array([[1.0, 2.0], [3.0, 4.0]]),
             utmQ=np.array([[5.0, 6.0]]), posDistThr=np.int64(25))
    (tmp_path / 'tiny_imageNames_index.txt').write_text('./D/a.jpg\n./D/b.jpg\n')
    (tmp_path / 'tiny_imageNames_query.txt').write_text('./D/q/c.jpg\n')
    got = load_dataset(tmp_path / 'tiny_test.npz')
    assert got.database.paths == (str(tmp_path / 'D/a.jpg'), str(tmp_path / 'D/b.jpg'))
    assert got.queries.paths == (str(tmp_path / 'D/q/c.jpg'),)
    np.testing.assert_array_equal(got.database.utm, [[1.0, 2.0], [3.0, 4.0]])
    assert got.database.utm_zone == ''
    assert read_npz(tmp_path / 'tiny_test.npz', utm_zone='17T').queries.utm_zone == '17T'
    (tmp_path / 'tiny_imageNames_query.txt').write_text('./D/q/c.jpg\n./D/q/d.jpg\n')
    with pytest.raises(DatasetError, match=r'tiny_imageNames_query\.txt: 2 names .* utmQ has 1'):
        read_npz(tmp_path / 'tiny_test.npz')
    (tmp_path / 'tiny_imageNames_index.txt').write_text('./D/a.jpg\n\n./D/b.jpg\n')
    with pytest.raises(DatasetError, match=r'tiny_imageNames_index\.txt:2: empty'):
        read_npz(tmp_path / 'tiny_test.npz')


def test_utm_filename_carries_pose():
    yaw = 0.3
    name = utm_filename(584500.123, 4476900.456, '17T', yaw, note='0001')
    fields = name.split('@')
    assert fields[0] == '' and fields[1:5] == ['584500.12', '4476900.46', '17', 'T']
    lat, lon = utm.to_latlon(584500.123, 4476900.456, 17, 'T')
    assert abs(float(fields[5]) - lat) < 1e-6 and abs(float(fields[6]) - lon) < 1e-6
    assert abs(float(fields[9]) - math.degrees(math.pi / 2 - yaw)) < 1e-4   # compass heading
    assert fields[14] == '0001' and name.endswith('@.jpg')
    with pytest.raises(DatasetError, match='band letter'):
        utm_filename(1.0, 2.0, '17')


def test_folder_layout_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    db = _set(['x'] * 4, 0)
    q = _set(['x'] * 2, 1, yaw=False)
    images = [rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for _ in range(6)]
    wrote_db, wrote_q = write_folder_layout(tmp_path / 'ds', db, q, images[:4], images[4:])
    got = load_dataset(tmp_path / 'ds')
    assert sorted(got.database.paths) == sorted(wrote_db.paths)
    order = [wrote_db.paths.index(p) for p in got.database.paths]
    np.testing.assert_allclose(got.database.utm, db.utm[order], atol=0.006)
    np.testing.assert_allclose(got.database.yaw, db.yaw[order], atol=1e-5)
    assert np.isnan(got.queries.yaw).all() and got.queries.utm_zone == ZONE
    first = cv2.cvtColor(cv2.imread(wrote_db.paths[0]), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(first, images[0])           # PNG: lossless


def test_folder_errors(tmp_path):
    (tmp_path / 'database').mkdir()
    with pytest.raises(DatasetError, match='no queries/'):
        read_folder(tmp_path)
    (tmp_path / 'queries').mkdir()
    cv2.imwrite(str(tmp_path / 'database' / 'db1.jpg'), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'queries' / utm_filename(1e5, 2e5, '17T')),
                np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r'db1\.jpg: name does not follow'):
        read_folder(tmp_path)
    (tmp_path / 'database' / 'db1.jpg').rename(tmp_path / 'database' / '@abc@1@17@T@0@0@.jpg')
    with pytest.raises(DatasetError, match=r'@abc@1@17@T@0@0@\.jpg: UTM_east'):
        read_folder(tmp_path)


def test_csv_forms(tmp_path):
    (tmp_path / 'utm.csv').write_text(
        'path,easting,northing,zone,yaw,stamp_ns,set\n'
        'a.jpg,584500,4476900,17T,0.5,100,database\n'
        'b.jpg,584510,4476910,17T,,200,database\n'
        'q.jpg,584505,4476905,17T,,,query\n')
    got = read_csv(tmp_path / 'utm.csv')
    assert got.database.paths == (str(tmp_path / 'a.jpg'), str(tmp_path / 'b.jpg'))
    np.testing.assert_array_equal(got.database.utm, [[584500, 4476900], [584510, 4476910]])
    assert got.database.yaw[0] == 0.5 and np.isnan(got.database.yaw[1])
    np.testing.assert_array_equal(got.database.stamps_ns, [100, 200])
    assert len(got.queries) == 1 and got.queries.utm_zone == '17T'

    lat, lon = utm.to_latlon(584500.0, 4476900.0, 17, 'T')
    (tmp_path / 'geo.csv').write_text(f'path,lat,lon\nimgs/a.jpg,{lat},{lon}\n')
    geo = load_dataset(tmp_path / 'geo.csv', image_root=tmp_path / 'root')
    np.testing.assert_allclose(geo.database.utm, [[584500.0, 4476900.0]], atol=1e-3)
    assert geo.database.utm_zone == '17T' and len(geo.queries) == 0
    assert geo.database.paths == (str(tmp_path / 'root/imgs/a.jpg'),)

    (tmp_path / 'plain.csv').write_text('a.jpg,10.5,20.5\nb.jpg,11,21\n')
    plain = read_csv(tmp_path / 'plain.csv', utm_zone='33U')
    np.testing.assert_array_equal(plain.database.utm, [[10.5, 20.5], [11, 21]])
    assert plain.database.utm_zone == '33U'


def test_image_names_that_are_urls_stay_urls(tmp_path):
    (tmp_path / 'set.csv').write_text(
        'path,easting,northing,zone,set\nhttps://host/db/../a.png,1,2,17T,database\n'
        'db/../b.png,3,4,17T,database\ns3://bucket/q.png,5,6,17T,query\n')
    got = load_dataset(tmp_path / 'set.csv')
    assert got.database.paths == ('https://host/db/../a.png', str(tmp_path / 'b.png'))
    assert got.queries.paths == ('s3://bucket/q.png',)
    np.savez(tmp_path / 'web_test.npz', utmDb=np.array([[1.0, 2.0]]), utmQ=np.array([[5.0, 6.0]]))
    (tmp_path / 'web_imageNames_index.txt').write_text('http://host/a.jpg\n')
    (tmp_path / 'web_imageNames_query.txt').write_text('./q/c.jpg\n')
    got = load_dataset(tmp_path / 'web_test.npz')
    assert got.database.paths == ('http://host/a.jpg',)
    assert got.queries.paths == (str(tmp_path / 'q/c.jpg'),)


@pytest.mark.parametrize('text, match', [
    ('path,easting,northing\na.jpg,1,2\nb.jpg,x,2\n', r'bad\.csv:3: column easting'),
    ('path,easting,northing\na.jpg,1\n', r'bad\.csv:2: 2 fields, expected 3'),
    ('path,foo\na.jpg,1\n', r'bad\.csv:1: header needs easting,northing or lat,lon'),
    ('path,easting,northing,set\na.jpg,1,2,train\n', r'bad\.csv:2: column set'),
    ('path,lat,lon\na.jpg,95,0\n', r'bad\.csv:2: lat/lon'),
    ('path,easting,northing,zone\na.jpg,1,2,17T\nb.jpg,1,2,18T\n', r'bad\.csv.*zones'),
])
def test_csv_errors(tmp_path, text, match):
    (tmp_path / 'bad.csv').write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_dataset(tmp_path / 'bad.csv')


def test_load_dataset_rejects_unknown(tmp_path):
    (tmp_path / 'x.txt').write_text('hello')
    with pytest.raises(DatasetError, match='unknown dataset kind'):
        load_dataset(tmp_path / 'x.txt')
    with pytest.raises(DatasetError, match='no such file'):
        load_dataset(tmp_path / 'missing.mat')
