"""Image files through a backbone, decoding the next batches while the current one is embedded."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import ImageConfig
from aesvc_vpr.errors import BackboneError, ImageError
from aesvc_vpr.images.files import decoded_batches, Failure, log_failures
from aesvc_vpr.images.locations import check_protocols


def embed_paths(backbone: Backbone, paths: Sequence[str], batch_size: int,
                desc: str = 'embedding', progress: bool = True,
                images: ImageConfig | None = None,
                ) -> tuple[np.ndarray, np.ndarray, list[Failure]]:
    """Embed image files in batches while the next batches decode (``images``: decode policy).

    Returns:
        (embeddings (K, dim) float32 of the images that decoded, rows (K,) int64 of those
        images in ``paths``, failures).

    Raises:
        BackboneError: a URL protocol among ``paths`` that cannot be read here (its fsspec
            package is missing): one line before any work, not one failure per image.
    """
    try:
        check_protocols(paths)
    except ImageError as err:
        raise BackboneError(f'{desc}: {err}') from err
    groups = [range(i, min(i + batch_size, len(paths))) for i in range(0, len(paths), batch_size)]
    parts, rows, failures = [], [], []
    with progress_bar(total=len(paths), desc=desc, unit='img', enabled=progress) as bar:
        for batch in decoded_batches(paths, groups, cfg=images):
            if batch.images:
                parts.append(backbone.embed(batch.images))
                rows.append(batch.rows)
            failures.extend(batch.failures)
            bar.update(len(batch.rows) + len(batch.failures))
    log_failures(failures, desc)
    embeddings = np.concatenate(parts) if parts else np.empty((0, backbone.dim), np.float32)
    return embeddings, np.concatenate(rows) if rows else np.empty(0, np.int64), failures
