"""Mode 1: replay a recording's images through the ROS-free core against a map, and score it.

Each image with ground truth goes through ``Localizer.localize`` one frame at a time, exactly the
call the node makes per camera frame, so the matches equal the node's and the latency is the
per-frame compute latency a robot would see (not a batched throughput).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from aesvc_vpr.bags.queries import FrameCounts, QueryPlan, QuerySource, scored_images
from aesvc_vpr.bags.reader import BagSet
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import FilterConfig, ImageConfig
from aesvc_vpr.errors import ReplayError
from aesvc_vpr.replay.frames import ReplayFrames
from aesvc_vpr.retrieval.localizer import Localization, Localizer
from aesvc_vpr.retrieval.mapdb import MapDatabase
from aesvc_vpr.retrieval.tracking import SequenceLocalizer

log = logging.getLogger(__name__)

LATENCY_KIND = 'compute per frame: embed + search (in process)'


def empty_frames(plan: QueryPlan, top_k: int, latency_kind: str) -> ReplayFrames:
    """Make the ReplayFrames of the plan's scored images, nothing answered yet."""
    rows = np.flatnonzero(plan.truth.valid)
    count = len(rows)
    return ReplayFrames(
        stamps_ns=plan.truth.stamps_ns[rows].copy(), truth_xy=plan.truth.xy[rows].copy(),
        indices=np.full((count, top_k), -1, np.int64),
        scores=np.full((count, top_k), np.nan, np.float32),
        answered=np.zeros(count, bool), latency_s=np.full(count, np.nan),
        latency_kind=latency_kind)


def replay_bag(localizer: Localizer, bags: BagSet, plan: QueryPlan,
               images: ImageConfig | None = None,
               filter_cfg: FilterConfig | None = None,
               odometry_from_poses: bool = False) -> ReplayFrames:
    """Localise every image of the plan that has ground truth.

    Args:
        localizer: the core, loaded with the map to localise against.
        bags: the open recording the plan was made from (``plan_queries``).
        plan: topics and ground truth.
        images: the decode policy (pixel limits).
        filter_cfg: with mode hmm, the frames hold the sequence filter's estimate (what the
            node publishes on ~/place_match) and ``raw_indices`` the frames' own top-k.
        odometry_from_poses: drive the filter's motion with the path length of the plan's pose
            topic (right when that topic is the robot's odometry, e.g. the town's /odom);
            otherwise the speed prior.

    Returns:
        The frames to score; an unusable image stays unanswered and is counted by cause in
        ``frames.unusable`` (see ``scored_images``).

    Raises:
        BagError: the bag turns out corrupt while its images are read.
        ReplayError: not one image could be used (the message counts them by cause).
    """
    frames = empty_frames(plan, localizer.match_cfg.top_k, LATENCY_KIND)
    slot = np.cumsum(plan.truth.valid) - 1          # image row -> row of ``frames``
    embed_s = np.full(len(frames.stamps_ns), np.nan)
    search_s = embed_s.copy()
    counts = FrameCounts()
    tracker = SequenceLocalizer(localizer, filter_cfg) \
        if filter_cfg is not None and filter_cfg.mode != 'off' else None
    odometer_m = path_lengths(frames.truth_xy) if odometry_from_poses else None
    if tracker is not None:
        frames.raw_indices = frames.indices.copy()
    for row, msg, rgb in progress_bar(scored_images(bags, plan, images, counts),
                                      total=plan.scored, desc='embedding', unit='img'):
        i = slot[row]
        if tracker is None:
            loc = localizer.localize(rgb, msg.stamp_ns)
        else:
            tracked = tracker.localize(rgb, msg.stamp_ns,
                                       None if odometer_m is None else float(odometer_m[i]))
            loc = tracked.estimate
            raw = tracked.raw.matches[:frames.indices.shape[1]]
            frames.raw_indices[i, :len(raw)] = [m.index for m in raw]
        fill_matches(frames, i, loc)
        frames.latency_s[i] = loc.compute_s
        embed_s[i], search_s[i] = loc.embed_s, loc.search_s
    frames.extra_latency_s = {'embed': embed_s, 'search': search_s}
    frames.unusable = dict(counts.refused)
    check_usable(counts, plan)
    return frames


def path_lengths(xy: np.ndarray) -> np.ndarray:
    """(M,) distance travelled along (M, 2) positions up to each one, metres (0 first)."""
    steps = np.linalg.norm(np.diff(np.asarray(xy, np.float64), axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def check_usable(counts: FrameCounts, plan: QueryPlan) -> None:
    """Refuse a replay in which no image could be used, instead of scoring zero.

    Raises:
        ReplayError: one line with the counts by cause.
    """
    if counts.total and not counts.usable:
        raise ReplayError(f'none of the {counts.total} images with ground truth on '
                          f'{plan.image_topic} could be used: {counts.summary()}')


def fill_matches(frames: ReplayFrames, i: int, loc: Localization) -> None:
    """Store one localisation's matches (best first) in row ``i`` of ``frames``."""
    matches = loc.matches[:frames.indices.shape[1]]
    frames.indices[i, :len(matches)] = [m.index for m in matches]
    frames.scores[i, :len(matches)] = [m.score for m in matches]
    frames.answered[i] = True


def replay_parameters(source: QuerySource, plan: QueryPlan, mapdb: MapDatabase,
                      radius_m: float, **settings: Any) -> dict[str, Any]:
    """Describe what produced a replay, for the JSON report; ``settings`` adds the rest."""
    return {
        'bags': list(source.bags), 'image_topic': plan.image_topic,
        'image_type': plan.image_type, 'pose_topic': plan.pose_topic,
        'pose_type': plan.pose_type, 'pose_frame': plan.track.frame,
        'max_gap_s': source.max_gap_s, 'limit': source.limit, 'radius_m': radius_m,
        'map': str(mapdb.root), 'map_count': mapdb.count, 'map_utm_zone': mapdb.utm_zone,
        'map_backbone': mapdb.backbone_name, 'map_head_fingerprint': mapdb.head_fingerprint,
        'images': plan.total, 'images_with_truth': plan.scored,
        'images_without_truth': plan.truth.skipped, 'poses_rejected': plan.track.rejected,
        **settings,
    }


def localizer_settings(localizer: Localizer) -> dict[str, Any]:
    """Return the core's settings of a mode-1 replay, for ``replay_parameters``."""
    return {'backbone': localizer.backbone.name, 'device': localizer.backbone.device,
            'prefix_dim': localizer.prefix_dim, 'index_type': localizer.search_cfg.index_type,
            'top_k': localizer.match_cfg.top_k}
