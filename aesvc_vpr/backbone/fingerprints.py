"""Weights fingerprints: sha256 of the files, cached so a large checkpoint is hashed once."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from aesvc_vpr.common.fileio import atomic_write, sha256_bytes, sha256_file

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Return aesvc_vpr's cache folder: $AESVC_VPR_CACHE, else in $XDG_CACHE_HOME or ~/.cache."""
    if os.environ.get('AESVC_VPR_CACHE'):
        return Path(os.environ['AESVC_VPR_CACHE'])
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'aesvc_vpr'


def fingerprint(files: list[Path]) -> str:
    """Return the sha256 of the weights: the file digest, or a digest of digests for several.

    Digests are cached in ``cache_root()/fingerprints.json`` keyed by path, size and mtime, so
    a 1 GB checkpoint is hashed once, not at every start.
    """
    digests = [_cached_sha256(f) for f in files]
    if len(digests) == 1:
        return digests[0]
    return sha256_bytes(''.join(digests).encode())


def _cached_sha256(file: Path) -> str:
    stat = file.stat()
    key = str(file.resolve())
    stamp = [stat.st_size, stat.st_mtime_ns]
    index_path = cache_root() / 'fingerprints.json'
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    entry = index.get(key)
    if isinstance(entry, dict) and entry.get('stamp') == stamp:
        return str(entry['sha256'])
    digest = sha256_file(file)
    index[key] = {'stamp': stamp, 'sha256': digest}
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(index_path, 'w') as f:
            json.dump(index, f, indent=1)
    except OSError as err:
        log.debug('fingerprint cache %s not written: %s', index_path, err)
    return digest
