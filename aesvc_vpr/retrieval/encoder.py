"""The one composition of backbone and head: images -> raw embeddings -> full-size embeddings.

Every consumer (the localiser, loop closure, map building, evaluation, the CLI and the demo)
loads and runs the two parts through an ``Encoder``, so there is one place that knows how a
head's prefix policy applies, what a missing head means (raw embeddings are searched as they
are), and which calibration images a quantized backbone gets by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.backbone.registry import load_backbone
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.data.town.views import town_calibration
from aesvc_vpr.errors import MapError
from aesvc_vpr.head.projector import Projector


@dataclass(frozen=True)
class Encoder:
    """A backbone and, optionally, the head applied to its output."""

    backbone: Backbone
    projector: Projector | None = None

    @classmethod
    def load(cls, backbone_cfg: BackboneConfig, head_path: str = '') -> Encoder:
        """Build the backbone and load the head file (if any) checked against it.

        Raises:
            BackboneError, WeightsError: the backbone cannot be built.
            HeadError: the head file is unreadable or was trained for another backbone.
        """
        return cls(load_backbone(backbone_cfg, town_calibration())).with_head(head_path)

    def with_head(self, head_path: str) -> Encoder:
        """Return this backbone with the head in ``head_path`` ('' : no head)."""
        if not head_path:
            return Encoder(self.backbone)
        return Encoder(self.backbone,
                       Projector.load(head_path, self.backbone.name, self.backbone.dim))

    @property
    def dim(self) -> int:
        """Size of the full embeddings: the head's largest prefix, or the backbone's output."""
        return self.projector.output_dim if self.projector is not None else self.backbone.dim

    @property
    def head_fingerprint(self) -> str:
        """The head file's sha256, '' without a head (what maps record)."""
        return self.projector.fingerprint if self.projector is not None else ''

    def project(self, raw: np.ndarray) -> np.ndarray:
        """(N, D) raw backbone embeddings -> (N, dim) float32 full embeddings, not normalised."""
        if self.projector is None:
            return np.asarray(raw, np.float32)
        return self.projector.project(raw)

    def embed(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embed RGB images.

        Returns:
            (raw (N, D) float32, full (N, dim) float32); full is raw itself without a head.
        """
        raw = self.backbone.embed(images)
        return raw, self.project(raw)

    def check_prefix(self, dim: int) -> int:
        """Validate a prefix size: the head's policy, or 1..backbone dim for raw embeddings.

        Raises:
            HeadError: outside the head's trained range; MapError: outside the raw size.
        """
        if self.projector is not None:
            return self.projector.check_prefix(dim)
        if not 1 <= dim <= self.backbone.dim:
            raise MapError(f'prefix size {dim} is outside 1..{self.backbone.dim} (no head: the '
                           f'raw {self.backbone.name} embeddings are searched)')
        return dim
