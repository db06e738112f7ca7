"""A compressed FAISS index over one prefix, built once, saved to a file and memory-mapped at load.

For maps of millions of entries the exact flat index is too large (4 * prefix bytes per entry)
and too slow to rebuild at every start. These recipes (after the FAISS wiki's guidelines for
1M-100M vectors) keep a few tens of bytes per entry: an inverted file (rows assigned through an
HNSW graph over the centroids, which is replaced by a flat scan of them for search) with
product-quantized residuals (``ivfpq``, optionally rotated by OPQ, ``opqpq``), 4-bit fast-scan
product codes (``ivfpqfs``, the default: twice the sub-quantizers in the same 32 bytes at prefix
128, scanned with SIMD shuffles from registers, ~4x faster per code than 8-bit PQ's table
look-ups) or 8-bit scalar codes (``ivfsq8``). Vectors are the L2-normalised prefixes under the
L2 metric, which ranks as cosine does (|a - b|^2 = 2 - 2 cos) and lets the
quantizers encode residuals. Their scores are approximate: the caller re-ranks the shortlist
exactly from the stored embeddings (``funnel.FunnelIndex``). Which recipe to use is measured
per map size and prefix by ``benchmarks/bench_scale.py``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import faiss
import numpy as np

from aesvc_vpr.errors import SearchError
from aesvc_vpr.index.prefix import l2_prefix

log = logging.getLogger(__name__)

RECIPES = ('ivfpq', 'opqpq', 'ivfsq8', 'ivfflat', 'ivfpqfs')
DEFAULT_RECIPE = 'ivfpqfs'
DEFAULT_NPROBE = 256       # bench_scale: R@1 0.99 at 1M re-ranked from a shortlist of 400
ADD_BLOCK = 65536          # rows normalised and added per step (bounds temporary memory)
TRAIN_PER_LIST = 40        # training rows per inverted list (FAISS wants >= 39)
MAX_TRAIN = 160_000       # k-means costs rows x lists: 10M rows, 8192 lists -> 20 rows per list
HNSW_QUANTIZER_M = 32
COARSE_NITER = 10          # k-means iterations of the coarse quantizer (FAISS default 25)
FAST_SCAN_PARALLEL_LISTS = 15  # IndexIVFFastScan.implem: one query's lists over the threads


def factory_string(recipe: str, count: int, dim: int) -> tuple[str, int]:
    """Return the index_factory string of a recipe for ``count`` rows of ``dim``, and nlist.

    nlist is about 2 sqrt(N), a power of two, with at least TRAIN_PER_LIST rows per list; PQ
    uses dim / 4 sub-quantizers of 8 bits, fast-scan PQ dim / 2 of 4 bits (both 32 bytes per
    entry at prefix 128).

    Raises:
        SearchError: an unknown recipe, or a prefix that PQ cannot split.
    """
    if recipe not in RECIPES:
        raise SearchError(f'index recipe must be one of {RECIPES}, got {recipe!r}')
    # 2 sqrt(N) rather than the wiki's 4-16 sqrt(N): k-means training dominates the build on
    # two cores, and longer lists cost little once a list is scanned as 32-byte codes
    nlist = 2 ** max(0, round(math.log2(max(1.0, 2 * math.sqrt(count)))))
    while nlist > 1 and nlist * TRAIN_PER_LIST > count:
        nlist //= 2
    coarse = f'IVF{nlist}_HNSW{HNSW_QUANTIZER_M}' if nlist >= 1024 else f'IVF{nlist}'
    if recipe in ('ivfpq', 'opqpq'):
        if dim % 4:
            raise SearchError(f'{recipe} needs a prefix divisible by 4, got {dim}')
        m = dim // 4
        rotation = f'OPQ{m},' if recipe == 'opqpq' else ''
        return f'{rotation}{coarse},PQ{m}', nlist
    if recipe == 'ivfpqfs':
        if dim % 2:
            raise SearchError(f'{recipe} needs an even prefix, got {dim}')
        return f'{coarse},PQ{dim // 2}x4fs', nlist
    return f'{coarse},{"SQ8" if recipe == "ivfsq8" else "Flat"}', nlist


def _flat_coarse_quantizer(ivf: faiss.IndexIVF) -> None:
    """Replace an HNSW coarse quantizer by a flat one over the same centroids, after the adds.

    The graph makes assigning millions of rows cheap, but a query visits hundreds of lists, and
    an HNSW search for that many neighbours costs more than scanning every centroid: at 8192
    lists of 128-d, 1.3 ms against 0.3 ms for 256 lists and 35 ms against 0.5 ms for 1024 (one
    thread). The flat quantizer also returns the exact nearest lists. Its centroids cost
    4 * prefix bytes per list (4 MiB for 8192 lists of 128-d).
    """
    quantizer = faiss.downcast_index(ivf.quantizer)
    if not isinstance(quantizer, faiss.IndexHNSW):
        return
    flat = faiss.IndexFlatL2(ivf.d)
    flat.add(quantizer.reconstruct_n(0, ivf.nlist))
    old = ivf.quantizer
    ivf.quantizer = flat
    flat.this.disown()      # owned and freed by the IVF index (own_fields)
    old.this.own(True)      # the graph is freed with its Python wrapper


class SavedIndex:
    """A compressed index over the normalised ``prefix_dim`` prefixes of a map's rows.

    Attributes:
        prefix_dim: leading dimensions indexed.
        index_type: the recipe ('ivfpq', ...).
        count: number of entries.
        nbytes: memory of the codes, ids and quantizers in bytes (mapped or resident).
        nprobe: inverted lists visited per query.
        nlist: inverted lists in the index.
        threads: FAISS threads; 0 means 1 for single queries and all cores for batches. With
            more than one, a single query's lists are scanned in parallel (fast-scan recipes):
            the same scores, but which of the rows tied at the k-th (quantised) score are kept
            depends on the split.
    """

    def __init__(self, index: faiss.Index, prefix_dim: int, recipe: str, nprobe: int) -> None:
        """Wrap a built or loaded FAISS index; use ``build`` or ``load``."""
        if index.d != prefix_dim:
            raise SearchError(f'index has dimension {index.d}, expected prefix {prefix_dim}')
        self._index = index
        self.prefix_dim = prefix_dim
        self.index_type = recipe
        self.count = int(index.ntotal)
        self.nprobe = 0
        self.threads = 0
        self.set_nprobe(nprobe)
        ivf = faiss.extract_index_ivf(index)
        self.nlist = int(ivf.nlist)
        self.nbytes = int(ivf.code_size * self.count + 8 * self.count
                          + 4 * ivf.nlist * prefix_dim)

    @classmethod
    def build(cls, embeddings_full: np.ndarray, prefix_dim: int, recipe: str = DEFAULT_RECIPE,
              nprobe: int = DEFAULT_NPROBE, seed: int = 0) -> SavedIndex:
        """Train on a seeded sample and add every row, a block at a time.

        Args:
            embeddings_full: (N, E) full-size embeddings, any float dtype (may be a np.memmap).
            prefix_dim: 1 <= prefix_dim <= E.
            recipe: one of RECIPES.
            nprobe: inverted lists visited per query (recall against speed).
            seed: the training sample's seed.

        Raises:
            SearchError: a bad recipe or prefix, or too few rows to train.
        """
        n = len(embeddings_full)
        if embeddings_full.ndim != 2 or not 1 <= prefix_dim <= embeddings_full.shape[1]:
            raise SearchError(f'cannot index prefix {prefix_dim} of embeddings of shape '
                              f'{embeddings_full.shape}')
        factory, nlist = factory_string(recipe, n, prefix_dim)
        if n < max(256, nlist * TRAIN_PER_LIST):
            raise SearchError(f'{recipe} needs at least {max(256, nlist * TRAIN_PER_LIST)} '
                              f'rows to train, the map has {n}; search it with a flat index')
        index = faiss.index_factory(prefix_dim, factory, faiss.METRIC_L2)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        if isinstance(ivf, faiss.IndexIVFPQ):
            # polysemous codes serve Hamming filtering, which this index never uses; training
            # them took ~30x longer than the rest of training (128 s of 133 s on 4k rows)
            ivf.do_polysemous_training = False
        ivf.cp.niter = COARSE_NITER
        sample = np.sort(np.random.default_rng(seed).choice(
            n, min(n, max(256 * (prefix_dim // 4), nlist * TRAIN_PER_LIST, 10_000), MAX_TRAIN),
            replace=False))
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        index.train(l2_prefix(embeddings_full[sample], prefix_dim))
        for start in range(0, n, ADD_BLOCK):
            index.add(l2_prefix(embeddings_full[start:start + ADD_BLOCK], prefix_dim))
        _flat_coarse_quantizer(ivf)
        log.info('built %s index (%s) over %d rows, prefix %d', recipe, factory, n, prefix_dim)
        return cls(index, prefix_dim, recipe, nprobe)

    @classmethod
    def load(cls, path: str | os.PathLike, prefix_dim: int, recipe: str,
             nprobe: int) -> SavedIndex:
        """Read an index file with its inverted lists memory-mapped (``IO_FLAG_MMAP``).

        Raises:
            SearchError: the file is not a FAISS index of this prefix (truncated, corrupt, or
                another kind of file).
        """
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError as err:
            raise SearchError(f'{path}: not a readable FAISS index '
                              f'({str(err).strip().splitlines()[-1][:200]})') from err
        try:
            return cls(index, prefix_dim, recipe, nprobe)
        except (RuntimeError, SearchError) as err:
            raise SearchError(f'{path}: {err}') from err

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` (the caller renames it into place)."""
        faiss.write_index(self._index, str(Path(path)))

    def set_nprobe(self, nprobe: int) -> None:
        """Visit ``nprobe`` inverted lists per query; the HNSW quantizer explores as widely."""
        if nprobe < 1:
            raise SearchError(f'nprobe must be >= 1, got {nprobe}')
        ivf = faiss.extract_index_ivf(self._index)
        ivf.nprobe = min(nprobe, ivf.nlist)
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            quantizer.hnsw.efSearch = max(2 * nprobe, 64)
        self.nprobe = ivf.nprobe

    def search(self, queries_full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k by cosine of the prefixes.

        Args:
            queries_full: (M, E') embeddings, E' >= prefix_dim.
            k: results per query.

        Returns:
            approximate cosine scores (M, k) float32 descending, rows (M, k) int64 (-1: fewer
            than k found).
        """
        if queries_full.ndim != 2 or queries_full.shape[1] < self.prefix_dim:
            raise SearchError(f'queries of shape {queries_full.shape} are shorter than the '
                              f'prefix {self.prefix_dim}')
        xq = l2_prefix(queries_full, self.prefix_dim)
        threads = self.threads or (1 if len(xq) == 1 else os.cpu_count() or 1)
        faiss.omp_set_num_threads(threads)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(self._index))
        if isinstance(ivf, faiss.IndexIVFFastScan):
            # FAISS parallelises fast-scan over queries; for one query its implementation 15
            # splits the lists over threads (reservoir per thread, merged), 0 picks by k
            ivf.implem = FAST_SCAN_PARALLEL_LISTS if len(xq) == 1 and threads > 1 else 0
        distances, indices = self._index.search(xq, min(k, self.count))
        # unit vectors: squared L2 distance d = 2 - 2 cos
        return (1.0 - distances / 2.0).astype(np.float32), indices.astype(np.int64, copy=False)
