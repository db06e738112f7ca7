"""Images at URLs (a real HTTP server on loopback): same bytes, failures listed, clear errors."""

from __future__ import annotations

import importlib.util
import multiprocessing

import cv2
from http_images import closed_port_url, serve_folder
from map_samples import textured_image
import numpy as np
import pytest

from aesvc_vpr.config import ImageConfig
from aesvc_vpr.errors import ImageError
from aesvc_vpr.images.files import decode_group, decoded_batches, read_rgb
from aesvc_vpr.images.locations import (check_protocols, FETCH_THREADS, is_url, join_location,
                                        read_all, read_bytes, url_protocol)

# protocols fsspec knows whose implementation lives in a package of its own
PACKAGED = (('s3', 's3fs'), ('gcs', 'gcsfs'), ('abfs', 'adlfs'))
MISSING = next(((p, pkg) for p, pkg in PACKAGED if importlib.util.find_spec(pkg) is None), None)


@pytest.fixture()
def folder(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f'img{i}.png'), textured_image(i))
    cv2.imwrite(str(tmp_path / 'img3.jpg'), textured_image(3))
    return tmp_path


@pytest.mark.parametrize('location, protocol', [
    ('http://host/a.png', 'http'), ('HTTPS://host/a.png', 'https'), ('s3://bucket/a.png', 's3'),
    ('gcs://bucket/dir/a.png', 'gcs'), ('/data/a.png', ''), ('data/a.png', ''),
    ('file:///data/a.png', ''), ('./odd:name.png', ''), ('c:/data/a.png', '')])
def test_urls_are_told_from_local_paths(location, protocol):
    assert url_protocol(location) == protocol
    assert is_url(location) == bool(protocol)


def test_dataset_names_join_the_folder_unless_they_are_urls(tmp_path):
    assert join_location(tmp_path, 'http://host/x/../a.png') == 'http://host/x/../a.png'
    assert join_location(tmp_path, 'sub/../a.png') == str(tmp_path / 'a.png')
    assert join_location(tmp_path, '/abs/a.png') == '/abs/a.png'
    assert join_location(tmp_path, 'file:///abs/my%20a.png') == '/abs/my a.png'


def test_bytes_and_images_from_http_are_those_of_the_file(folder):
    with serve_folder(folder) as base:
        for name in ('img0.png', 'img3.jpg'):
            got = read_bytes(f'{base}/{name}')
            assert got.dtype == np.uint8 and got.tobytes() == (folder / name).read_bytes()
            np.testing.assert_array_equal(read_rgb(f'{base}/{name}'),
                                          read_rgb(str(folder / name)))
    assert read_bytes((folder / 'img1.png').as_uri()).tobytes() == \
        (folder / 'img1.png').read_bytes()


def test_failed_fetches_are_failures_of_their_rows_in_order(folder):
    (folder / 'cut.png').write_bytes((folder / 'img2.png').read_bytes()[:200])
    refused = closed_port_url()
    with serve_folder(folder) as base:
        paths = [f'{base}/img0.png', f'{base}/gone.png', str(folder / 'img1.png'), refused,
                 f'{base}/cut.png', str(folder / 'missing.png'), f'{base}/img3.jpg']
        batch = decode_group(paths, range(len(paths)), ImageConfig())
    assert batch.rows.tolist() == [0, 2, 6]
    np.testing.assert_array_equal(batch.images[0], read_rgb(str(folder / 'img0.png')))
    np.testing.assert_array_equal(batch.images[2], read_rgb(str(folder / 'img3.jpg')))
    failed = {f.row: f for f in batch.failures}
    assert sorted(failed) == [1, 3, 4, 5]
    assert all(failed[r].path == paths[r] and '\n' not in failed[r].reason for r in failed)
    assert failed[1].reason == f'{paths[1]}: cannot fetch the image (not found)'
    assert failed[3].reason.startswith(f'{refused}: cannot fetch the image (')
    assert 'truncated PNG' in failed[4].reason          # fetched, then refused by the policy
    assert 'cannot read or decode' in failed[5].reason


def test_a_batch_fetches_its_urls_concurrently(folder):
    # the server answers only once all of them are in flight together: one at a time, each
    # would wait for the others in vain and get a 503
    count = min(6, FETCH_THREADS)
    for i in range(count):
        (folder / f'copy{i}.png').write_bytes((folder / 'img0.png').read_bytes())
    with serve_folder(folder, together=count) as base:
        paths = [f'{base}/copy{i}.png' for i in range(count)]
        batch = decode_group(paths, range(count), ImageConfig())
    assert batch.failures == [] and batch.rows.tolist() == list(range(count))


def test_the_next_batch_downloads_while_one_decodes(folder):
    # two batches of three; the server answers once all six are in flight together
    for i in range(6):
        (folder / f'copy{i}.png').write_bytes((folder / 'img0.png').read_bytes())
    with serve_folder(folder, together=6) as base:
        paths = [f'{base}/copy{i}.png' for i in range(6)]
        batches = list(decoded_batches(paths, [range(0, 3), range(3, 6)]))
    assert [b.rows.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5]]
    assert [b.failures for b in batches] == [[], []]


def _fetched_bytes(url: str) -> bytes:
    got, = read_all([url])
    return got.tobytes()


def test_a_forked_child_fetches_with_threads_of_its_own(folder):
    with serve_folder(folder) as base:
        url = f'{base}/img1.png'
        assert _fetched_bytes(url) == (folder / 'img1.png').read_bytes()    # the pool is up
        with multiprocessing.get_context('fork').Pool(1) as pool:
            got = pool.apply_async(_fetched_bytes, (url,)).get(timeout=60)
    assert got == (folder / 'img1.png').read_bytes()


@pytest.mark.skipif(MISSING is None, reason='s3fs, gcsfs and adlfs are all installed')
def test_a_protocol_without_its_package_is_one_clear_error(folder):
    protocol, package = MISSING
    url = f'{protocol}://bucket/maps/img0.png'
    with pytest.raises(ImageError, match=rf'{url}: .*needs the {package} package.*'
                                         rf'pip install {package}') as caught:
        check_protocols([str(folder / 'img0.png'), 'http://host/a.png', url, url + '2'])
    assert caught.value.cause == 'unsupported protocol'
    assert '\n' not in str(caught.value)


def test_an_unknown_protocol_is_an_error_and_paths_and_http_pass(folder):
    with pytest.raises(ImageError, match=r'nosuch://b/a\.png: fsspec knows no protocol nosuch'):
        check_protocols([str(folder / 'img0.png'), 'nosuch://b/a.png'])
    # local files need nothing; http(s) only the pinned fsspec and aiohttp
    check_protocols([str(folder / 'img0.png'), (folder / 'img1.png').as_uri(), 'rel/a.png',
                     'http://host/a.png', 'https://host/b.png'])


def test_embedding_queries_checks_their_protocols_before_any_work(folder):
    from aesvc_vpr.backbone.feed import embed_paths
    from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
    from aesvc_vpr.errors import BackboneError

    class Counting(PatchGridBackbone):
        calls = 0

        def embed(self, images):
            Counting.calls += 1
            return super().embed(images)

    paths = [str(folder / 'img0.png'), 'nosuch://b/a.png']
    with pytest.raises(BackboneError, match=r'^queries: nosuch://b/a\.png: fsspec knows no '
                                            'protocol nosuch'):
        embed_paths(Counting(), paths, 1, 'queries', progress=False)
    assert Counting.calls == 0
    embeddings, rows, failures = embed_paths(Counting(), paths[:1], 1, 'queries', False)
    assert Counting.calls == 1 and rows.tolist() == [0] and not failures
