"""Loop-closure evaluation: ground-truth loop opportunities, precision/recall and the PR curve."""

from __future__ import annotations

import numpy as np
import pytest

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.config import LoopClosureConfig
from aesvc_vpr.data.synthetic_route import looping_route, town_loop_route
from aesvc_vpr.errors import EvaluationError
from aesvc_vpr.evaluation.loop_eval import evaluate_loops, loopable, LoopFrame


def test_loopable_worked_by_hand() -> None:
    # frames 1 s apart along x: 0, 10, 20, 10, 0 m; exclusion 1.5 s; radius 5 m
    stamps = np.arange(5) * 10**9
    xy = np.array([[0, 0], [10, 0], [20, 0], [10.0, 0], [0, 0]])
    # frame 3 (at 10 m) may look back to frames 0..1 -> frame 1 is at 10 m: loopable
    # frame 4 (at 0 m) may look back to frames 0..2 -> frame 0: loopable; frames 0-2 cannot
    assert loopable(stamps, xy, 5.0, 1.5).tolist() == [False, False, False, True, True]
    # 25 m of travelled path excluded as well: frame 3 has travelled 30 m, frame 1 only 10 m
    assert loopable(stamps, xy, 5.0, 1.5, 25.0).tolist() == [False, False, False, False, True]
    assert not loopable(stamps, xy, 5.0, 10.0).any()


def test_report_on_a_synthetic_loop() -> None:
    route = looping_route(laps=2.0, noise=0.6)
    frames = [LoopFrame(int(s), tuple(p), e, odom=tuple(p))
              for s, p, e in zip(route.stamps_ns, route.poses, route.embeddings)]
    cfg = LoopClosureConfig(min_score=0.6, consistency_k=1)
    report = evaluate_loops(frames, cfg, radius_m=5.0)
    thresholds = [p['threshold'] for p in report.pr_curve]
    assert thresholds == sorted(thresholds) and 0.6 in thresholds and len(thresholds) == 21
    recalls = [p['recall'] for p in report.pr_curve]
    assert recalls == sorted(recalls, reverse=True)     # a higher threshold never finds more
    low = report.pr_curve[0]
    assert low['precision'] < 0.8                       # at threshold 0 look-alikes get through
    perfect = [p['recall'] for p in report.pr_curve if p['precision'] == 1.0 and p['published']]
    assert report.recall_at_100_precision == max(perfect) > 0.9
    at_cfg = next(p for p in report.pr_curve if p['threshold'] == 0.6)
    assert (report.precision, report.recall) == (at_cfg['precision'], at_cfg['recall'])
    assert report.n_true == sum(ok for _, ok in report.closures)
    assert report.n_loopable == 205 and report.n_frames == len(route)
    assert set(report.latency_ms) == {'detect_median', 'detect_p95'}
    assert 'closures' not in report.as_dict()


def test_images_are_embedded_and_verified_geometrically() -> None:
    route = town_loop_route()
    backbone = PatchGridBackbone()
    frames = [LoopFrame(int(s), tuple(p), image=image, odom=tuple(p))
              for s, p, image in zip(route.stamps_ns, route.poses, route.images)]
    cfg = LoopClosureConfig(consistency_k=1, geometric_check='orb')
    report = evaluate_loops(frames, cfg, radius_m=10.0, embed=backbone.embed,
                            thresholds=[0.3, 0.5, 0.7])
    assert {'embed_median', 'embed_p95'} <= set(report.latency_ms)
    assert all(p['precision'] == 1.0 for p in report.pr_curve)   # geometry stops look-alikes
    assert report.pr_curve[0]['recall'] > 0.7
    assert all(c.inliers >= cfg.min_inliers for c, _ in report.closures)


def test_frames_without_embedding_or_image_are_refused() -> None:
    with pytest.raises(EvaluationError, match='no embedding'):
        evaluate_loops([LoopFrame(1, (0.0, 0.0, 0.0))], LoopClosureConfig(), radius_m=5.0)
    with pytest.raises(EvaluationError, match='no frames'):
        evaluate_loops([], LoopClosureConfig(), radius_m=5.0)
