"""Images decoded in a background thread, so the backbone never waits for the disk or the codec.

Images are files or URLs (``locations``). Every image passes the one decode policy (``decode``:
size from the header, pixel limits, complete data). Refused, undecodable and unreachable images
are reported as failures with their row and reason, never dropped silently. OpenCV releases the
GIL while it decodes, so one decoding thread overlaps the backbone's forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
from pathlib import Path
import queue
import threading
from typing import Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from aesvc_vpr.config import ImageConfig
from aesvc_vpr.errors import ImageError
from aesvc_vpr.images.decode import decode_file_bytes
from aesvc_vpr.images.locations import read_all, read_bytes
from aesvc_vpr.images.rgb import as_rgb_uint8

log = logging.getLogger(__name__)

PREFETCH_BATCHES = 4
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.webp')


@dataclass(frozen=True)
class Failure:
    """An image that could not be used."""

    row: int
    path: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON-able record, as kept in map.json."""
        return {'row': self.row, 'path': self.path, 'reason': self.reason}


@dataclass(frozen=True)
class DecodedBatch:
    """One group of rows: the images that decoded (in row order) and those that did not."""

    rows: np.ndarray               # (B,) int64 rows of ``images``
    images: list[np.ndarray]       # (H, W, 3) uint8 RGB
    failures: list[Failure]


def image_files(folder: Path) -> list[Path]:
    """Return the image files under ``folder``, recursively, in sorted path order."""
    return sorted(p for p in folder.rglob('*')
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: str, cfg: ImageConfig | None = None) -> np.ndarray:
    """Read an image file or URL as (H, W, 3) uint8 RGB under the decode policy ``cfg``.

    Raises:
        ImageError: a missing or unreadable file, a failed fetch, a truncated or corrupt image,
            or a size outside the configured pixel counts (checked from the header, before
            decoding).
    """
    return _decode_rgb(read_bytes(path), path, cfg or ImageConfig())


def _decode_rgb(data: np.ndarray, what: str, cfg: ImageConfig) -> np.ndarray:
    bgr = decode_file_bytes(data, what, cfg)
    return as_rgb_uint8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def decoded_batches(paths: Sequence[str], groups: Iterable[Sequence[int]],
                    prefetch: int = PREFETCH_BATCHES,
                    cfg: ImageConfig | None = None) -> Iterator[DecodedBatch]:
    """Decode ``paths`` group by group in a background thread, ``prefetch`` groups ahead.

    Args:
        paths: image files.
        groups: row groups (e.g. batches) in the order they are wanted.
        prefetch: groups decoded ahead of the consumer.
        cfg: the decode policy (default ``ImageConfig()``).

    Yields:
        one DecodedBatch per group, in order.
    """
    done = object()
    out: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    policy = cfg or ImageConfig()

    def produce() -> None:
        # one group ahead: the next group's URLs download while this one decodes
        ahead: tuple[Sequence[int], Iterator[np.ndarray | ImageError]] | None = None
        try:
            for group in groups:
                if stop.is_set():
                    return
                reads = read_all([paths[row] for row in group])
                if ahead is not None:
                    out.put(decode_group(paths, ahead[0], policy, ahead[1]))
                ahead = (group, reads)
            if ahead is not None and not stop.is_set():
                out.put(decode_group(paths, ahead[0], policy, ahead[1]))
        except BaseException as err:     # noqa: B902 - handed to the consumer, re-raised there
            out.put(err)
        out.put(done)

    thread = threading.Thread(target=produce, name='image-decoder', daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():       # unblock a producer stuck on a full queue
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass


def log_failures(failures: Sequence[Failure], what: str) -> None:
    """One warning line per run with the count and the first few failures."""
    if failures:
        shown = '; '.join(f'{f.path}: {f.reason}' for f in failures[:3])
        log.warning('%s: skipped %d unusable image(s): %s%s', what, len(failures), shown,
                    ' ...' if len(failures) > 3 else '')


def decode_group(paths: Sequence[str] | Mapping[int, str], group: Sequence[int],
                 cfg: ImageConfig,
                 reads: Iterator[np.ndarray | ImageError] | None = None) -> DecodedBatch:
    """Decode the images of rows ``group`` under ``cfg``: one batch, failures listed.

    ``paths`` maps rows to files or URLs: the whole list, or (in a Ray actor) only this group's
    rows. The group's URLs are fetched concurrently (``locations.read_all``), unless ``reads``
    holds the reads already started.
    """
    rows, images, failures = [], [], []
    locations = [paths[row] for row in group]
    if reads is None:
        reads = read_all(locations)
    for row, location, data in zip(group, locations, reads):
        try:
            if isinstance(data, ImageError):
                raise data
            images.append(_decode_rgb(data, location, cfg))
            rows.append(row)
        except ImageError as err:
            failures.append(Failure(int(row), location, str(err)))
    return DecodedBatch(np.asarray(rows, np.int64), images, failures)
