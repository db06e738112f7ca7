"""What every map-build executor shares: the embedding of one decoded batch and the shard files.

The local executor (``mapbuild``) and the Ray executor (``ray_build``) cut the database into the
same shards (``chunk_size`` rows) and batches (``batch_size`` rows, never across a shard), run
``embed_batch`` on each batch and save each shard with ``save_shard``. The same batches through
the same function give the same bytes, whichever machine ran them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.images.files import DecodedBatch

PART_KEYS = ('rows', 'raw', 'failed_rows', 'failed_reasons')


def embed_batch(backbone: Backbone, batch: DecodedBatch) -> dict[str, np.ndarray]:
    """Embed one decoded batch: the one embedding step of every executor.

    Returns:
        ``rows`` (B,) int64 rows embedded, ``raw`` (B, D) float16 raw embeddings,
        ``failed_rows`` (F,) int64 and ``failed_reasons`` (F,) str of the images that failed.
    """
    raw = (backbone.embed(batch.images).astype(np.float16) if batch.images
           else np.empty((0, backbone.dim), np.float16))
    return {'rows': np.asarray(batch.rows, np.int64), 'raw': raw,
            'failed_rows': np.asarray([f.row for f in batch.failures], np.int64),
            'failed_reasons': np.asarray([f.reason for f in batch.failures], dtype=str)}


def join_parts(parts: Sequence[dict[str, np.ndarray]], dim: int) -> dict[str, np.ndarray]:
    """Concatenate the ``embed_batch`` results of a shard's batches, in row order."""
    def cat(key: str, empty: np.ndarray) -> np.ndarray:
        arrays = [p[key] for p in parts if len(p[key])]
        return np.concatenate(arrays) if arrays else empty
    return {'rows': cat('rows', np.empty(0, np.int64)),
            'raw': cat('raw', np.empty((0, dim), np.float16)),
            'failed_rows': cat('failed_rows', np.empty(0, np.int64)),
            'failed_reasons': cat('failed_reasons', np.asarray([], dtype=str))}


def batch_groups(starts: Sequence[int], count: int, chunk_size: int,
                 batch_size: int) -> list[range]:
    """Return the batches of the shards that begin at ``starts``: none straddles a shard.

    Fixed batch boundaries make a resumed or distributed build batch exactly as a fresh local
    one does.
    """
    return [range(b, min(b + batch_size, s + chunk_size, count))
            for s in starts for b in range(s, min(s + chunk_size, count), batch_size)]


def shard_path(build: Path, start: int) -> Path:
    """Return the file of the shard that begins at row ``start``."""
    return build / f'chunk_{start:09d}.npz'


def save_shard(build: Path, start: int, arrays: dict[str, np.ndarray]) -> None:
    """Write a shard's arrays under a new name, then rename it into place."""
    with atomic_write(shard_path(build, start)) as f:
        np.savez(f, **{k: arrays[k] for k in PART_KEYS})


def load_shard(build: Path, start: int) -> dict[str, np.ndarray]:
    """Read a saved shard's arrays."""
    with np.load(shard_path(build, start)) as data:
        return {k: data[k] for k in PART_KEYS}
