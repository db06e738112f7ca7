"""A real HTTP server on loopback, serving a folder, for tests that read images from URLs."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import socket
import threading
from typing import Iterator

from aesvc_vpr.data.datasets import GeoImageSet


class _QuietHandler(SimpleHTTPRequestHandler):
    """Serves files with keep-alive (HTTP/1.1), as real image servers do; logs nothing.

    With ``together``, every GET waits until that many are in flight at once (503 if they never
    are), so only concurrent fetches get their files.
    """

    protocol_version = 'HTTP/1.1'

    def __init__(self, *args: object, together: threading.Barrier | None = None,
                 **kwargs: object) -> None:
        self.together = together
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        """Answer once the requests to wait for are all here."""
        if self.together is not None:
            try:
                self.together.wait(timeout=60)
            except threading.BrokenBarrierError:
                self.send_error(503, 'the other requests never came')
                return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        """Keep the test output clean."""


@contextmanager
def serve_folder(folder: Path, together: int = 0) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 at a free port; yield its base URL (no trailing slash).

    ``together`` > 0: answer GETs only in groups of that many in flight at once.
    """
    barrier = threading.Barrier(together) if together else None
    server = ThreadingHTTPServer(('127.0.0.1', 0), partial(
        _QuietHandler, directory=str(folder), together=barrier))
    thread = threading.Thread(target=server.serve_forever, name='http-images', daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url(name: str = 'a.png') -> str:
    """Return a URL on a loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return f'http://127.0.0.1:{port}/{name}'


def url_set(images: GeoImageSet, base: str) -> GeoImageSet:
    """``images`` with each path replaced by its file's URL under ``base`` (same folder)."""
    urls = tuple(f'{base}/{Path(p).name}' for p in images.paths)
    return GeoImageSet(urls, images.utm, images.utm_zone, images.yaw, images.stamps_ns,
                       source=base)
