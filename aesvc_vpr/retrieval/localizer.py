"""The ROS-free localisation core: image -> backbone -> head -> prefix search in the map -> poses.

The node, bag replay and loop closure all call this, so their results agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import logging
import time
from typing import Sequence

import numpy as np

from aesvc_vpr.backbone.protocol import Backbone
from aesvc_vpr.config import BackboneConfig, MatchConfig, SearchConfig
from aesvc_vpr.errors import MapError, SearchError
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.index.funnel import FunnelIndex
from aesvc_vpr.index.prefix import l2_prefix
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.rerank import exact_scores
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.map_index import load_saved_index, saved_index_for
from aesvc_vpr.retrieval.mapdb import MapDatabase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Match:
    """One retrieved map entry: its row, cosine score and pose (UTM metres, ENU yaw rad)."""

    index: int
    score: float
    easting: float
    northing: float
    yaw: float


@dataclass(frozen=True)
class Localization:
    """The matches for one image, best first, with the time each stage took."""

    stamp_ns: int
    matches: list[Match]
    embed_s: float
    search_s: float

    @property
    def compute_s(self) -> float:
        """Embedding plus search time in seconds."""
        return self.embed_s + self.search_s


class Localizer:
    """Embeds images and searches them in a map at a switchable prefix size."""

    def __init__(self, encoder: Encoder, mapdb: MapDatabase, search_cfg: SearchConfig,
                 match_cfg: MatchConfig) -> None:
        """Check that backbone, head and map belong together and index the map.

        Raises:
            MapError: the map was built with another backbone or head, or the prefix is
                larger than its embeddings; HeadError: outside the head's trained range.
        """
        mapdb.check_backbone(encoder.backbone)
        mapdb.check_head(encoder.projector)
        self.encoder = encoder
        self.mapdb = mapdb
        self.search_cfg = search_cfg
        self.match_cfg = match_cfg
        self._index = self._build_index(search_cfg)

    @classmethod
    def from_config(cls, backbone_cfg: BackboneConfig, head_path: str, map_path: str,
                    search_cfg: SearchConfig, match_cfg: MatchConfig) -> Localizer:
        """Load backbone, head and map from files.

        Args:
            head_path: head file; '' uses the head stored in the map directory, if any.

        Raises:
            BackboneError, HeadError, MapError: whichever part does not load or fit.
        """
        encoder = Encoder.load(backbone_cfg)
        mapdb = MapDatabase.load(map_path, encoder.backbone)
        return cls(encoder.with_head(head_path or mapdb.head_file), mapdb, search_cfg, match_cfg)

    @property
    def backbone(self) -> Backbone:
        """The image encoder."""
        return self.encoder.backbone

    @property
    def projector(self) -> Projector | None:
        """The head, None when raw embeddings are searched."""
        return self.encoder.projector

    @property
    def prefix_dim(self) -> int:
        """The prefix size currently searched."""
        return self._index.prefix_dim

    @property
    def index_type(self) -> str:
        """What searches the map: 'flat', 'ivf', 'hnsw' or 'funnel(<first stage>@<prefix>)'."""
        return self._index.index_type

    def set_prefix_dim(self, dim: int) -> None:
        """Search a different prefix size from now on (re-indexes the stored embeddings).

        Raises:
            MapError: dim outside 1..embedding size (the head's policy applies with a head).
        """
        self.set_search(replace(self.search_cfg, prefix_dim=dim))

    def check_search(self, search_cfg: SearchConfig) -> None:
        """Refuse what ``set_search`` would refuse, cheaply: no index is built or read.

        Raises:
            MapError / HeadError: a prefix or shortlist prefix out of range, or no saved index
                for the first-stage prefix.
        """
        first_dim = self._checked_first_dim(search_cfg)
        if search_cfg.index_type == 'saved':
            saved_index_for(self.mapdb, first_dim)

    def set_search(self, search_cfg: SearchConfig) -> None:
        """Search with other settings from now on (prefix, funnel shortlist).

        Raises:
            MapError: a prefix outside the map's (or head's) range, or no saved index for it.
        """
        index = self._build_index(search_cfg)
        self._index = index      # one assignment: a concurrent search sees the old or new index
        self.search_cfg = search_cfg
        log.info('searching prefix %d with %s (%d entries, index %.1f MiB)',
                 search_cfg.prefix_dim, index.index_type, index.count, index.nbytes / 2**20)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Full-size embeddings of RGB images: (N, E) float32, E the head's output size."""
        return self.encoder.embed(images)[1]

    def search(self, full_embeddings: np.ndarray, stamps_ns: Sequence[int],
               match_cfg: MatchConfig | None = None, top_k: int | None = None
               ) -> list[Localization]:
        """Search embeddings from ``embed``; each result gets an equal share of the search time.

        Args:
            full_embeddings: (M, E) from ``embed``.
            stamps_ns: M image stamps.
            match_cfg: settings for this call (default ``self.match_cfg``): a caller that
                swaps settings while frames are in flight passes the one set it publishes with.
            top_k: results per image; None takes ``match_cfg.top_k``.
        """
        if len(full_embeddings) != len(stamps_ns):
            raise MapError(f'{len(full_embeddings)} embeddings but {len(stamps_ns)} stamps')
        start = time.perf_counter()
        top_k = top_k or (match_cfg or self.match_cfg).top_k
        scores, indices = self._index.search(full_embeddings, top_k)
        share = (time.perf_counter() - start) / max(1, len(stamps_ns))
        utm, yaw = self.mapdb.utm, self.mapdb.yaw
        return [Localization(int(stamp), [
            Match(int(i), float(s), float(utm[i, 0]), float(utm[i, 1]), float(yaw[i]))
            for s, i in zip(row_scores, row_indices) if i >= 0], 0.0, share)
            for stamp, row_scores, row_indices in zip(stamps_ns, scores, indices)]

    def localize(self, image_rgb: np.ndarray, stamp_ns: int,
                 match_cfg: MatchConfig | None = None) -> Localization:
        """Embed one (H, W, 3) uint8 RGB image and return its top-k map matches."""
        start = time.perf_counter()
        full = self.embed([image_rgb])
        embed_s = time.perf_counter() - start
        result = self.search(full, [stamp_ns], match_cfg)[0]
        return Localization(result.stamp_ns, result.matches, embed_s, result.search_s)

    def scores_of(self, full_embedding: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact cosine scores of one embedding against chosen map rows, at the searched prefix.

        Args:
            full_embedding: (E,) from ``embed``.
            rows: (R,) int map rows.

        Returns:
            (R,) float32 scores, as ``search`` would report them.
        """
        query = l2_prefix(full_embedding[None, :], self.prefix_dim)[0]
        # only the chosen rows leave the (memory-mapped) store, converted as they are read
        return exact_scores(self.mapdb.store, np.asarray(rows, np.int64), query)

    def _checked_first_dim(self, cfg: SearchConfig) -> int:
        """Check the searched (and shortlist) prefix; return the first stage's prefix size."""
        self.encoder.check_prefix(cfg.prefix_dim)
        if 0 < cfg.shortlist_dim < cfg.prefix_dim:      # a funnel: shortlist, then re-rank
            self.encoder.check_prefix(cfg.shortlist_dim)
            return cfg.shortlist_dim
        return cfg.prefix_dim

    def _build_index(self, cfg: SearchConfig) -> PrefixIndex | FunnelIndex:
        """Index the map for ``cfg``: a first stage, re-ranked when it is a funnel or saved.

        The first stage searches the shortlist prefix (funnel) or the searched one; a funnel or
        the map's saved index is re-ranked exactly from the stored embeddings.
        """
        first_dim = self._checked_first_dim(cfg)
        funnel = first_dim < cfg.prefix_dim
        store = self.mapdb.store
        if cfg.index_type == 'saved':
            first = load_saved_index(self.mapdb, first_dim)
            first.threads = cfg.threads
        else:
            first = PrefixIndex(store, first_dim, cfg.index_type, cfg.threads)
            if not funnel:
                return first
        try:
            return FunnelIndex(first, store, cfg.prefix_dim, cfg.shortlist_k)
        except SearchError as err:
            raise MapError(f'{self.mapdb.root}: {err}') from err
