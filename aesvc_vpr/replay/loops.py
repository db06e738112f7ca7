"""Loop-closure evaluation of a recording: bag images + ground truth -> detector -> report.

The bag is read the way both localisation replay modes read it (``bag_queries``): images without
ground truth are counted and skipped. The ground-truth poses are also what the detector is told
as odometry (unless switched off), as a robot's own odometry would be.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Iterator

from aesvc_vpr.bags.queries import FrameCounts, QueryPlan, scored_images
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import ImageConfig
from aesvc_vpr.evaluation.loop_eval import LoopFrame, LoopReport

log = logging.getLogger(__name__)


def loop_frames(bags: BagSet, plan: QueryPlan, odometry: bool = True,
                images: ImageConfig | None = None,
                counts: FrameCounts | None = None) -> Iterator[LoopFrame]:
    """Frames with ground truth, decoded, in bag order.

    Args:
        bags: the open recording the plan was made from.
        plan: topics and ground truth (``bag_queries.plan_queries``).
        odometry: also give the ground-truth pose to the detector as odometry (only where its
            yaw is known: the detector refuses non-finite odometry).
        images: the decode policy.
        counts: filled with the usable and the refused images, by cause.
    """
    truth = plan.truth
    for row, msg, rgb in scored_images(bags, plan, images, counts):
        pose = (float(truth.xy[row, 0]), float(truth.xy[row, 1]), float(truth.yaw[row]))
        odom = pose if odometry and all(math.isfinite(v) for v in pose) else None
        yield LoopFrame(int(truth.stamps_ns[row]), pose, image=rgb, odom=odom)


def format_loop_table(report: LoopReport, title: str) -> str:
    """Format the operating point, the best recall at precision 1 and latency as a text table."""
    lat = report.latency_ms
    lines = [title,
             f'  frames {report.n_frames}, loopable {report.n_loopable}, published '
             f'{report.n_published} ({report.n_true} true)',
             f'  at min_score {report.min_score:g}: precision {report.precision:.3f}, '
             f'recall {report.recall:.3f}',
             f'  recall at 100 % precision: {report.recall_at_100_precision:.3f}',
             f'  detect latency median {lat["detect_median"]:.2f} ms, '
             f'p95 {lat["detect_p95"]:.2f} ms']
    if 'embed_median' in lat:
        lines.append(f'  embed latency median {lat["embed_median"]:.1f} ms, '
                     f'p95 {lat["embed_p95"]:.1f} ms')
    return '\n'.join(lines)


def write_loop_report(out_dir: str | Path, report: LoopReport,
                      parameters: dict[str, Any]) -> dict[str, Path]:
    """Write loop_report.json (scores, PR curve, latency, counters) and loop_closures.csv.

    Returns:
        name -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {'report': out / 'loop_report.json', 'closures': out / 'loop_closures.csv'}
    with atomic_write(paths['report'], 'w') as f:
        json.dump({'parameters': parameters, **provenance(), **report.as_dict()}, f, indent=2)
        f.write('\n')
    with atomic_write(paths['closures'], 'w') as f:
        f.write('t_query_ns,t_match_ns,score,inliers,true\n')
        for closure, true in report.closures:
            f.write(f'{closure.t_query_ns},{closure.t_match_ns},{closure.score:.6f},'
                    f'{closure.inliers},{int(true)}\n')
    return paths
