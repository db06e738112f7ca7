"""Taking a prefix of an embedding: the one operation every (SS)2D consumer shares."""

from __future__ import annotations

import numpy as np

from aesvc_vpr.errors import SearchError


def l2_prefix(full: np.ndarray, dim: int) -> np.ndarray:
    """Keep the first ``dim`` columns and L2-normalise each row.

    Args:
        full: (N, E) embeddings, any float dtype, not necessarily normalised.
        dim: prefix size, 1 <= dim <= E.

    Returns:
        (N, dim) float32, C-contiguous, unit rows (an all-zero row stays zero).
    """
    if not 1 <= dim <= full.shape[1]:
        raise SearchError(f'prefix {dim} is outside 1..{full.shape[1]}')
    # one copy of the prefix, normalised in place: index builds on large maps are bound by this
    x = np.array(full[:, :dim], dtype=np.float32, order='C')
    norms = np.sqrt(np.einsum('ij,ij->i', x, x))
    x /= np.maximum(norms, 1e-12)[:, None]
    return x
