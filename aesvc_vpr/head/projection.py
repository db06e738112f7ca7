"""The interface every embedding projection offers: the trained head and each baseline.

A projection maps (N, input_dim) raw backbone embeddings to (N, output_dim) full-size
embeddings (``project``, not normalised); ``prefix(raw, d)`` keeps the first d values and
L2-normalises them, which is what search uses. ``check_prefix`` states which sizes are valid.
Benchmarks, evaluation and tests treat the head and the baselines alike through it.
"""

from __future__ import annotations

import numpy as np

from aesvc_vpr.errors import HeadError
from aesvc_vpr.index.prefix import l2_prefix


class Projection:
    """Shared prefix handling: any 1 <= d <= output_dim unless a subclass says otherwise."""

    name = 'projection'
    input_dim = 0
    output_dim = 0
    prefix_sizes: tuple[int, ...] = ()

    def project(self, raw: np.ndarray) -> np.ndarray:
        """(N, input_dim) raw -> (N, output_dim) float32, not normalised."""
        raise NotImplementedError

    def check_prefix(self, dim: int) -> int:
        """Return ``dim`` if 1 <= dim <= output_dim, else raise HeadError naming the maximum."""
        if not 1 <= dim <= self.output_dim:
            raise HeadError(f'{self.name}: prefix size {dim} is outside 1..{self.output_dim}')
        return dim

    def prefix(self, raw: np.ndarray, dim: int) -> np.ndarray:
        """(N, dim) float32 L2-normalised prefix of the projection."""
        return l2_prefix(self.project(raw), self.check_prefix(dim))

    def _check_input(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self.input_dim:
            raise HeadError(f'{self.name}: expects (N, {self.input_dim}) embeddings, got '
                            f'shape {raw.shape}')
        return raw
