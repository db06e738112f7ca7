"""Flags of the sequence filter in a replay (bag-eval, bag-play): mode, speed prior, odometry."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

from aesvc_vpr.config import FILTER_MODES, FilterConfig

if TYPE_CHECKING:
    from aesvc_vpr.replay.frames import ReplayFrames


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --filter, --speed-mps and --filter-odometry (the same in both replay modes)."""
    parser.add_argument('--filter', choices=FILTER_MODES, default='off',
                        help="hmm: score the sequence filter's estimate (what ~/place_match "
                             'publishes), with single-frame Recall@1 beside it')
    parser.add_argument('--speed-mps', type=float, default=FilterConfig().speed_mps,
                        help="the filter's speed prior in m/s (default %(default)s)")
    parser.add_argument('--filter-odometry', action='store_true',
                        help='drive the filter with the pose topic as odometry (when it is, as '
                             'the town /odom is); else the speed prior')


def filter_config(args: argparse.Namespace) -> FilterConfig:
    """Return the filter settings the flags ask for."""
    return FilterConfig(mode=args.filter, speed_mps=args.speed_mps)


def single_frame_extra(frames: ReplayFrames, map_utm: np.ndarray,
                       radius_m: float) -> dict[str, object]:
    """With the filter on: the frames' own Recall@N for the report, and one printed line."""
    if frames.raw_indices is None:
        return {}
    from aesvc_vpr.replay.report import single_frame_recall

    recall = single_frame_recall(frames, map_utm, radius_m)
    print(f'single-frame Recall@1 {100 * recall["R@1"]:.2f} '
          "(the table below is the filter's estimate)")
    return {'single_frame_recall': recall}
