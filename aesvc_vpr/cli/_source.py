"""Flags and helpers choosing a recording, its topics and ground truth (bag-eval, bag-play)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from aesvc_vpr.errors import ConfigError

if TYPE_CHECKING:
    from aesvc_vpr.bags.queries import QueryPlan, QuerySource


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags that choose recording, topics and ground truth (shared with bag-play)."""
    parser.add_argument('--bag', nargs='+', required=True,
                        help='ROS 1 .bag files and/or rosbag2 directories, merged in time order')
    parser.add_argument('--image-topic', default='',
                        help='Image or CompressedImage topic (default: the only one)')
    parser.add_argument('--pose-topic', default='',
                        help='Odometry, PoseStamped, PoseWithCovarianceStamped or NavSatFix topic '
                             'with ground truth in the map frame (default: the only one)')
    parser.add_argument('--pose-tf', default='', metavar='PARENT:CHILD',
                        help='ground truth from /tf and /tf_static instead of a pose topic: the '
                             'pose of CHILD in PARENT (e.g. map:base_link), chained and '
                             'interpolated')
    parser.add_argument('--max-gap-s', type=float, default=0.1,
                        help='poses bracketing an image may be at most this far apart; images '
                             'without such a pair are counted and skipped')
    parser.add_argument('--utm-zone', default='',
                        help="zone NavSatFix fixes are projected into (default: the map's)")
    parser.add_argument('--limit', type=int, default=0, help='only the first N images')
    parser.add_argument('--list-topics', action='store_true',
                        help='print the topics of the bags (types, counts) and exit')
    parser.add_argument('--out', default='', help='report folder (required unless --list-topics)')


def list_topics(bags: list[str]) -> int:
    """Print every bag topic with its type and count."""
    from aesvc_vpr.bags.reader import BagSet

    with BagSet(bags) as opened:
        print(opened.describe_topics())
    return 0


def source_from_args(args: argparse.Namespace, utm_zone: str) -> QuerySource:
    """Build the QuerySource the flags describe; ``utm_zone`` applies without --utm-zone."""
    from aesvc_vpr.bags.queries import QuerySource

    if not args.out:
        raise ConfigError('--out is required (the report folder)')
    if args.pose_tf and args.pose_topic:
        raise ConfigError('give --pose-topic or --pose-tf, not both')
    return QuerySource(tuple(args.bag), args.image_topic, args.pose_topic, args.max_gap_s,
                       args.utm_zone or utm_zone, args.limit, args.pose_tf)


def print_summary(table: str, plan: QueryPlan, paths: dict[str, Path],
                  unusable: dict[str, int] | None = None) -> None:
    """Print a replay's table, its skipped and unusable image counts and the files written."""
    print(table)
    print(f'{plan.truth.skipped} of {plan.total} images had no ground truth and were skipped')
    print_unusable(unusable or {}, plan.scored)
    print('report: ' + ', '.join(str(p) for p in paths.values()))


def print_unusable(unusable: dict[str, int], scored: int) -> None:
    """Print one line counting the images that could not be used, by cause (if any)."""
    if unusable:
        causes = ', '.join(f'{n} {cause}' for cause, n in
                           sorted(unusable.items(), key=lambda kv: -kv[1]))
        print(f'{sum(unusable.values())} of {scored} images with ground truth could not be '
              f'used and count as misses: {causes}')
