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
    return normalise_rows(np.array(full[:, :dim], dtype=np.float32, order='C'))


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Divide each row of a float32 array by its L2 norm, in place; return it.

    An all-zero row stays zero. The one normalisation that ``l2_prefix`` and the exact re-rank
    (``rerank.prefix_rows``) share, so their scores agree bit for bit.
    """
    norms = np.sqrt(np.einsum('ij,ij->i', x, x))
    x /= np.maximum(norms, 1e-12)[:, None]
    return x
