"""Single-frame against sequence-filtered Recall@1, on queries taken in their recorded order.

The queries of a dataset recorded along a route (Nordland, a drive) are one sequence. Each is
searched on its own (its top-k), and the same top-k lists feed the place filter
(``retrieval.tracking.filter_sequence``, the calls the node makes) in order. Both Recall@1 values
leave out the first ``warmup`` frames, during which the filter has seen too little.
"""

from __future__ import annotations

from dataclasses import asdict
import logging
from typing import Any, Sequence

import numpy as np

from aesvc_vpr.config import FilterConfig, RecallConfig
from aesvc_vpr.errors import EvaluationError
from aesvc_vpr.index.prefix_index import PrefixIndex
from aesvc_vpr.index.ranking import positives_within, relevance
from aesvc_vpr.retrieval.tracking import filter_sequence

log = logging.getLogger(__name__)


def sequence_stamps(stamps_ns: np.ndarray, period_s: float) -> np.ndarray:
    """Return the queries' own stamps when they increase strictly, else one every ``period_s``."""
    stamps = np.asarray(stamps_ns, np.int64)
    if len(stamps) > 1 and (np.diff(stamps) > 0).all():
        return stamps
    return (np.arange(len(stamps)) * period_s * 1e9).astype(np.int64)


def evaluate_sequence(database_utm: np.ndarray, query_utm: np.ndarray, stamps_ns: np.ndarray,
                      representations: dict[str, tuple[np.ndarray, np.ndarray]],
                      dims: Sequence[int], cfg: RecallConfig, filter_cfg: FilterConfig,
                      warmup: int = 20) -> dict[str, Any]:
    """Recall@1 of each representation and prefix size, single-frame and filtered.

    Args:
        database_utm: (N, 2) metres; query_utm: (M, 2) metres, queries in recorded order.
        stamps_ns: (M,) increasing query stamps (``sequence_stamps``).
        representations: {method: (database (N, E), queries (M, E))} full-size embeddings.
        dims: prefix sizes (sizes above E are skipped).
        cfg: the positives radius.
        filter_cfg: the filter (its ``top_k`` candidates per frame).
        warmup: frames left out of both Recall@1 values.

    Raises:
        EvaluationError: no query after the warm-up.
    """
    if len(query_utm) <= warmup:
        raise EvaluationError(f'{len(query_utm)} queries leave none after a warm-up of {warmup}')
    positives = positives_within(database_utm, query_utm, cfg.radius_m)
    rows = []
    for method, (database, queries) in representations.items():
        for dim in sorted(d for d in set(dims) if d <= database.shape[1]):
            scores, ranked = PrefixIndex(database, dim).search(queries, filter_cfg.top_k)
            best, seconds = filter_sequence(database_utm, filter_cfg, ranked, scores, stamps_ns)
            single = relevance(ranked[:, :1], positives)[warmup:, 0].mean()
            filtered = relevance(best[:, None], positives)[warmup:, 0].mean()
            rows.append({'method': method, 'dim': dim, 'single_recall@1': float(single),
                         'filtered_recall@1': float(filtered),
                         'filter_ms_p95': float(np.percentile(seconds, 95) * 1e3)})
            log.info('%s @%d: Recall@1 single %.4f, filtered %.4f', method, dim, single,
                     filtered)
    return {'warmup': warmup, 'queries': int(len(query_utm)), 'filter': asdict(filter_cfg),
            'rows': rows}


def format_sequence_table(report: dict[str, Any]) -> str:
    """Format the sequence rows as a fixed-width table (percentages)."""
    lines = [f'{"method":>8} {"dim":>6} {"single R@1":>11} {"filtered":>9}']
    for row in report['rows']:
        lines.append(f'{row["method"]:>8} {row["dim"]:>6} {100 * row["single_recall@1"]:>11.2f}'
                     f' {100 * row["filtered_recall@1"]:>9.2f}')
    lines.append(f'{report["queries"]} queries in order, the first {report["warmup"]} left out; '
                 f'filter {report["filter"]["mode"]}, top-{report["filter"]["top_k"]}, speed '
                 f'{report["filter"]["speed_mps"]:g} m/s')
    return '\n'.join(lines)
