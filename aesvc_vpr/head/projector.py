"""Inference with a trained head: raw backbone embeddings -> full-size (SS)2D student embeddings.

Prefix policy: any prefix size 1 <= d <= output_dim is accepted. The student was trained so that
each size in ``prefix_sizes`` keeps the teacher's similarity structure; sizes in between usually
behave like their neighbours but were not trained, so they are accepted with a logged warning
(once per size and projector). A size above ``output_dim`` is a HeadError naming the maximum.
The projector returns full-size, unnormalised embeddings; callers take a prefix and L2-normalise
it with ``aesvc_vpr.index.prefix.l2_prefix`` (``Projector.prefix`` does both).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.headfile import HeadFile, load_head
from aesvc_vpr.head.projection import Projection

log = logging.getLogger(__name__)

BATCH = 4096   # rows per forward pass: bounds memory for whole-map projection


class Projector(Projection):
    """The (SS)2D student of one head file, with the input standardisation it was trained with."""

    def __init__(self, head: HeadFile) -> None:
        """Wrap an already loaded head (use ``Projector.load`` for a file)."""
        self.head = head
        self.path = head.path
        self.name = f'head {head.path}'
        self.backbone_name = head.meta.backbone_name
        self.input_dim = head.meta.input_dim
        self.prefix_sizes = head.meta.head.prefix_sizes
        self.output_dim = self.prefix_sizes[-1]
        self.fingerprint = head.fingerprint
        self._mean = torch.from_numpy(head.meta.standardisation.mean)
        self._std = torch.from_numpy(head.meta.standardisation.std)
        self._warned: set[int] = set()

    @classmethod
    def load(cls, path: str | os.PathLike[str], backbone_name: str | None = None,
             input_dim: int | None = None) -> Projector:
        """Load and validate a head file.

        Args:
            path: the ``.safetensors`` head file.
            backbone_name: if given, the head must have been trained for this backbone.
            input_dim: if given, the head's input dimension must equal it.

        Raises:
            HeadError: unreadable/corrupt file or a mismatch (the message names both values).
        """
        projector = cls(load_head(path, backbone_name, input_dim))
        log.info('head %s: %s %d-d -> %d-d, prefixes %s', projector.path,
                 projector.backbone_name, projector.input_dim, projector.output_dim,
                 projector.prefix_sizes)
        return projector

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Map raw backbone embeddings to full-size student embeddings.

        Args:
            raw: (N, input_dim) float array (float16/32/64), not normalised.

        Returns:
            (N, output_dim) float32, NOT normalised.

        Raises:
            HeadError: wrong shape or non-finite values.
        """
        raw = np.asarray(raw)
        if raw.ndim != 2 or raw.shape[1] != self.input_dim:
            raise HeadError(f'{self.path}: head expects (N, {self.input_dim}) embeddings from '
                            f'{self.backbone_name!r}, got shape {raw.shape}')
        out = np.empty((raw.shape[0], self.output_dim), np.float32)
        with torch.inference_mode():
            for start in range(0, raw.shape[0], BATCH):
                chunk = torch.from_numpy(np.asarray(raw[start:start + BATCH], np.float32))
                out[start:start + BATCH] = self.head.student((chunk - self._mean) / self._std)
        if not np.isfinite(out).all():
            raise HeadError(f'{self.path}: projection produced NaN/inf; check the input '
                            'embeddings for NaN/inf')
        return out

    def check_prefix(self, dim: int) -> int:
        """Validate a prefix size under the documented policy and return it.

        Raises:
            HeadError: dim < 1 or dim > output_dim (the message names the maximum).
        """
        if not 1 <= dim <= self.output_dim:
            raise HeadError(f'prefix size {dim} is outside 1..{self.output_dim}: head '
                            f'{self.path} was trained up to {self.output_dim} '
                            f'(sizes {self.prefix_sizes})')
        if dim not in self.prefix_sizes and dim not in self._warned:
            self._warned.add(dim)
            log.warning('prefix size %d was not trained (head %s trained %s); it is accepted '
                        'but retrieval quality at this size is not guaranteed', dim, self.path,
                        self.prefix_sizes)
        return dim
