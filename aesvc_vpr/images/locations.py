"""Where an image lives: a local file, or a URL read through fsspec (http, s3, gcs, ...).

A location with a ``scheme://`` other than ``file://`` is a URL. Its bytes come from the fsspec
filesystem of its protocol in one read (``cat_file``: one GET over http), then go through the
same decode policy as a local file's. A fetch waits on the network, not the CPU, so the URLs of
a batch are fetched concurrently on a small shared thread pool, while local files are read one
by one as before. A fetch that fails (not found, refused, timed out) is that image's
ImageError, listed with the other unusable images; a protocol whose fsspec package is missing
is found once, before a build starts (``check_protocols``).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
import os
from pathlib import Path
import re
import threading
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np

from aesvc_vpr.errors import ImageError

# fetches in flight per process: latency-bound, so more than the cores, few enough for a server
FETCH_THREADS = 16
_SCHEME = re.compile(r'([A-Za-z][A-Za-z0-9+.-]+)://')
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def url_protocol(location: str) -> str:
    """Return a URL's protocol in lower case ('http', 's3', ...), or '' for a local file.

    ``file://`` URLs are local files.
    """
    match = _SCHEME.match(location) if '://' in location else None
    protocol = match[1].lower() if match else ''
    return '' if protocol == 'file' else protocol


def is_url(location: str) -> bool:
    """Whether ``location`` is read through fsspec rather than from the local filesystem."""
    return bool(url_protocol(location))


def join_location(root: str | os.PathLike, name: str) -> str:
    """Return a dataset's image name as a location: a URL as given, a file name under ``root``.

    A ``file://`` URL becomes its local path; any other name without a scheme is joined to
    ``root`` (an absolute name stays itself) and normalised.
    """
    if is_url(name):
        return name
    return os.path.normpath(Path(root) / _local_path(name))


def check_protocols(locations: Iterable[str]) -> None:
    """Make sure every URL protocol among ``locations`` can be read here, before any work.

    Raises:
        ImageError: a protocol fsspec does not know, or whose package is not installed (the
            message names the package to install), with cause 'unsupported protocol'.
    """
    first: dict[str, str] = {}
    for location in locations:
        protocol = url_protocol(location)
        if protocol and protocol not in first:
            first[protocol] = location
    for protocol, location in first.items():
        _check_protocol(protocol, location)


def read_bytes(location: str) -> np.ndarray:
    """Read the bytes of one image file or URL: (N,) uint8.

    Raises:
        ImageError: a missing or unreadable file, or a fetch that failed (cause 'unreadable');
            see ``check_protocols`` for a protocol that cannot be read here.
    """
    if url_protocol(location):
        return _fetch(location)
    try:
        return np.fromfile(_local_path(location), np.uint8)
    except OSError as err:
        raise ImageError(f'{location}: cannot read or decode the image ({err.strerror or err})',
                         'unreadable') from err


def read_all(locations: Sequence[str]) -> Iterator[np.ndarray | ImageError]:
    """Start reading ``locations``; iterate for each one's bytes or ImageError, in order.

    The URLs among ``locations`` are sent to the fetch pool now, all at once; local files are
    read when their turn comes, so the caller decodes one image while the next ones download.
    """
    fetches: dict[int, Future] = {i: _fetch_pool().submit(_fetch, location)
                                  for i, location in enumerate(locations)
                                  if url_protocol(location)}
    return _results(locations, fetches)


def _results(locations: Sequence[str],
             fetches: dict[int, Future]) -> Iterator[np.ndarray | ImageError]:
    try:
        for i, location in enumerate(locations):
            try:
                yield fetches[i].result() if i in fetches else read_bytes(location)
            except ImageError as err:
                yield err
    finally:
        for fetch in fetches.values():    # a consumer that stopped early
            fetch.cancel()


def _local_path(location: str) -> str:
    """Return a local file's path: a ``file://`` URL's path, any other location as it is."""
    return url2pathname(urlsplit(location).path) if _SCHEME.match(location) else location


def _fetch(url: str) -> np.ndarray:
    """One URL's bytes through fsspec; any failure of the fetch is the image's ImageError."""
    try:
        import fsspec
        filesystem, path = fsspec.core.url_to_fs(url)
        data = filesystem.cat_file(path)
    except Exception as err:      # noqa: B902 - each fsspec backend raises its own types
        raise ImageError(f'{url}: cannot fetch the image ({_reason(err)})',
                         'unreadable') from err
    return np.frombuffer(data, np.uint8)


def _reason(err: BaseException) -> str:
    """One line for a failed fetch: 'not found', or the error's type and first line."""
    if isinstance(err, FileNotFoundError):
        return 'not found'
    lines = str(err).strip().splitlines()
    return f'{type(err).__name__}: {lines[0]}' if lines else type(err).__name__


def _check_protocol(protocol: str, location: str) -> None:
    """Import fsspec's filesystem class for ``protocol`` (and so its package)."""
    try:
        import fsspec
    except ImportError as err:
        raise ImageError(f'{location}: reading images from URLs needs fsspec: pip install -r '
                         'requirements.txt', 'unsupported protocol') from err
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError as err:
        raise ImageError(f'{location}: fsspec knows no protocol {protocol}://; give a local '
                         'path or an http(s), s3, gcs or az URL', 'unsupported protocol') from err
    except ImportError as err:
        missing = getattr(err.__cause__, 'name', None) or str(
            fsspec.registry.known_implementations[protocol]['class']).split('.')[0]
        raise ImageError(f'{location}: reading {protocol}:// URLs needs the {missing} package, '
                         f'which is not installed: pip install {missing} ({err})',
                         'unsupported protocol') from err


def _fetch_pool() -> ThreadPoolExecutor:
    """Return the process's fetch threads, started on the first URL."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix='image-fetch')
        return _pool


def _forget_pool() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


# a forked child has none of its parent's threads: it starts a pool of its own
os.register_at_fork(after_in_child=_forget_pool)
