"""The standard VPR evaluation of a map at several prefix sizes, with baselines in the same run.

Rows: the head's prefixes (when the map has a head), plain truncation of the raw backbone
embedding (its last row is the raw backbone itself), and PCA fitted on the map's raw database
embeddings (no labels, like the head). Every row uses the same positives and the same exact
search, so the table compares representations only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import logging
import os
from typing import Any, Sequence

import numpy as np

from aesvc_vpr.backbone.feed import embed_paths
from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.config import FilterConfig, ImageConfig, RecallConfig
from aesvc_vpr.data.datasets import GeoImageSet
from aesvc_vpr.errors import EvaluationError
from aesvc_vpr.evaluation.sequence_eval import evaluate_sequence, sequence_stamps
from aesvc_vpr.head.baselines import AesvcEncoder, PCA
from aesvc_vpr.head.quality import cosine_stats
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import map_at_k, positives_within, recall_at_n, relevance
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.mapdb import MapDatabase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceOptions:
    """How ``evaluate_map`` also scores the queries as one filtered sequence."""

    filter: FilterConfig           # noqa: A003 (the filter's config group)
    warmup: int = 20               # frames left out of Recall@1
    period_s: float = 1.0          # time between queries when they carry no stamps


@dataclass(frozen=True)
class EvalRow:
    """Scores of one representation at one size."""

    method: str                  # 'head', 'aesvc', 'raw', 'pca' or 'pcaw'
    dim: int
    recall: dict[int, float]     # {N: Recall@N}
    map_at_k: float
    mean_cos: float = 0.0        # over random pairs of database prefixes: near 0 when centred
    var_cos_d: float = 0.0       # their variance times the size: near 1 when whitened


def evaluate_method(method: str, database: np.ndarray, queries: np.ndarray,
                    positives: Sequence[np.ndarray], dims: Sequence[int],
                    cfg: RecallConfig, index_type: str = 'flat') -> list[EvalRow]:
    """Recall@N and mAP@k of one representation at each prefix size.

    Args:
        method: row label.
        database: (N, E) full-size database embeddings.
        queries: (M, E) full-size query embeddings.
        positives: M arrays of positive database rows.
        dims: prefix sizes (sizes above E are skipped).
        cfg: Recall@N cut-offs and mAP@k.
        index_type: PrefixIndex type ('flat' is exact).
    """
    k = max(*cfg.recall_at, cfg.map_at)
    num_positives = np.array([len(p) for p in positives])
    rows = []
    for dim in sorted(d for d in set(dims) if d <= database.shape[1]):
        _, ranked = PrefixIndex(database, dim, index_type).search(queries, k)
        relevant = relevance(ranked, positives)
        mean_cos, var_cos = cosine_stats(database[:, :dim])
        rows.append(EvalRow(method, dim, recall_at_n(relevant, cfg.recall_at),
                            map_at_k(relevant, num_positives, cfg.map_at), mean_cos,
                            var_cos * dim))
        log.info('%s @%d: Recall@%d %.4f, mAP@%d %.4f', method, dim, cfg.recall_at[0],
                 rows[-1].recall[cfg.recall_at[0]], cfg.map_at, rows[-1].map_at_k)
    return rows


def evaluate_representations(database_utm: np.ndarray, query_utm: np.ndarray,
                             representations: dict[str, tuple[np.ndarray, np.ndarray]],
                             dims: Sequence[int], cfg: RecallConfig,
                             index_type: str = 'flat') -> dict[str, Any]:
    """Evaluate several representations on the same ground truth.

    Args:
        database_utm: (N, 2) metres; query_utm: (M, 2) metres, same zone.
        representations: {method: (database (N, E), queries (M, E)) full-size embeddings}.
        dims: prefix sizes; each method also gets a row at its full size E.
        cfg: radius and cut-offs.

    Returns:
        A JSON-able report: counts, protocol and one entry per row.
    """
    positives = positives_within(database_utm, query_utm, cfg.radius_m)
    counts = np.array([len(p) for p in positives])
    if (counts == 0).any():
        log.warning('%d of %d queries have no database image within %.1f m; they count as misses',
                    int((counts == 0).sum()), len(counts), cfg.radius_m)
    rows: list[EvalRow] = []
    for method, (database, queries) in representations.items():
        rows += evaluate_method(method, database, queries, positives,
                                [*dims, database.shape[1]], cfg, index_type)
    return {
        'protocol': {'radius_m': cfg.radius_m, 'recall_at': list(cfg.recall_at),
                     'map_at': cfg.map_at, 'index_type': index_type},
        'database': int(len(database_utm)),
        'queries': int(len(query_utm)),
        'queries_without_positives': int((counts == 0).sum()),
        'median_positives': float(np.median(counts)) if len(counts) else 0.0,
        'rows': [{**asdict(r), 'recall': {str(n): v for n, v in r.recall.items()}}
                 for r in rows],
    }


def evaluate_map(mapdb: MapDatabase, queries: GeoImageSet, encoder: Encoder,
                 dims: Sequence[int], cfg: RecallConfig, pca: bool = True, batch_size: int = 8,
                 progress: bool = True, images: ImageConfig | None = None,
                 sequence: SequenceOptions | None = None) -> dict[str, Any]:
    """Embed the query images and evaluate the map: head, teacher, raw, PCA and PCA-whitening.

    The teacher row (``aesvc``) is the head's AE-SVC latent used directly; the PCA rows are
    fitted on the map's raw embeddings (no labels, like the head). With ``sequence`` the
    queries are also taken as one sequence in their order, single-frame against filtered
    (``report['sequence']``, see ``sequence_eval``).

    Queries that fail the decode policy (``images``) are left out and counted in
    ``queries_failed``.

    Raises:
        MapError: the map does not belong to this backbone/head.
        EvaluationError: no query decodes, or queries in another UTM zone.
    """
    mapdb.check_backbone(encoder.backbone)
    mapdb.check_head(encoder.projector)
    if queries.utm_zone and mapdb.utm_zone and queries.utm_zone != mapdb.utm_zone:
        raise EvaluationError(f'{queries.source}: queries are in UTM zone {queries.utm_zone}, '
                              f'map {mapdb.root} in {mapdb.utm_zone}')
    raw, rows, failures = embed_paths(encoder.backbone, queries.paths, batch_size, 'queries',
                                      progress, images)
    if not len(rows):
        raise EvaluationError(f'{queries.source}: none of the {len(queries)} query images decode')
    database_raw = mapdb.raw.astype(np.float32)
    representations = {}
    if encoder.projector is not None:
        representations['head'] = (mapdb.embeddings, encoder.project(raw))
        head = encoder.projector.head
        teacher = AesvcEncoder(head.meta.standardisation, head.autoencoder)
        representations['aesvc'] = (teacher.project(database_raw), teacher.project(raw))
    representations['raw'] = (database_raw, raw)
    if pca:
        for name, whiten in (('pca', False), ('pcaw', True)):
            fitted = PCA.fit(database_raw, whiten=whiten)
            representations[name] = (fitted.project(database_raw), fitted.project(raw))
    report = evaluate_representations(mapdb.utm, queries.utm[rows], representations, dims, cfg)
    if sequence is not None:
        stamps = sequence_stamps(queries.stamps_ns[rows], sequence.period_s)
        report['sequence'] = evaluate_sequence(mapdb.utm, queries.utm[rows], stamps,
                                               representations, dims, cfg, sequence.filter,
                                               sequence.warmup)
    report['queries_failed'] = [f.as_dict() for f in failures]
    report['map'] = str(mapdb.root)
    report['backbone'] = mapdb.backbone_name
    report['head'] = mapdb.head_fingerprint
    return report


def format_table(report: dict[str, Any]) -> str:
    """Format the report's rows as a fixed-width text table (percentages)."""
    protocol = report['protocol']
    head = ['method', 'dim', *(f'R@{n}' for n in protocol['recall_at']),
            f'mAP@{protocol["map_at"]}', 'mean cos', 'Var*d']
    lines = [' '.join(f'{h:>8}' for h in head)]
    for row in report['rows']:
        recalls = [100 * row['recall'][str(n)] for n in protocol['recall_at']]
        lines.append(f'{row["method"]:>8} {row["dim"]:>8} '
                     + ' '.join(f'{v:>8.2f}' for v in [*recalls, 100 * row['map_at_k']])
                     + f' {row["mean_cos"]:>8.3f} {row["var_cos_d"]:>8.2f}')
    lines.append(f'{report["queries"]} queries, {report["database"]} database images, positives '
                 f'within {protocol["radius_m"]} m (median {report["median_positives"]:.0f}, '
                 f'{report["queries_without_positives"]} queries without any)')
    return '\n'.join(lines)


def write_json(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the report atomically.

    Raises:
        EvaluationError: the file cannot be written.
    """
    try:
        with atomic_write(path, 'w') as f:
            json.dump(report, f, indent=1)
    except OSError as err:
        raise EvaluationError(f'{path}: cannot write the report ({err})') from err


def plot_recall(report: dict[str, Any], path: str | os.PathLike) -> None:
    """PNG of Recall@1 and mAP@k against prefix size, one line per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    protocol = report['protocol']
    first = protocol['recall_at'][0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r['method'] for r in report['rows']):
        rows = [r for r in report['rows'] if r['method'] == method]
        dims = [r['dim'] for r in rows]
        axes[0].plot(dims, [100 * r['recall'][str(first)] for r in rows], 'o-', label=method)
        axes[1].plot(dims, [100 * r['map_at_k'] for r in rows], 'o-', label=method)
    for ax, label in zip(axes, (f'Recall@{first} (%)', f'mAP@{protocol["map_at"]} (%)')):
        ax.set_xscale('log', base=2)
        ax.set_xlabel('prefix size (dimensions)')
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f'{report["queries"]} queries, {report["database"]} database images, '
                 f'positives within {protocol["radius_m"]} m')
    save_figure(fig, path, 'the plot')


def save_figure(fig: Any, path: str | os.PathLike, what: str) -> None:
    """Lay out, write as PNG under a new name then rename, and close a matplotlib figure.

    Raises:
        EvaluationError: the file cannot be written (``what`` names it in the message).
    """
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format='png', dpi=100)
    except OSError as err:
        raise EvaluationError(f'{path}: cannot write {what} ({err})') from err
    finally:
        plt.close(fig)
