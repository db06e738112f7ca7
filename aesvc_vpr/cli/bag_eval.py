"""``aesvc-vpr bag-eval``: replay a recording through the core against a map (mode 1)."""

from __future__ import annotations

import argparse

from aesvc_vpr.cli._backbone import add_backbone_arguments, backbone_config
from aesvc_vpr.cli._filter import add_filter_arguments, filter_config, single_frame_extra
from aesvc_vpr.cli._images import add_image_arguments, image_config
from aesvc_vpr.cli._loop_closure import add_loop_arguments, run_loop_closure
from aesvc_vpr.cli._source import (add_source_arguments, list_topics, print_summary,
                                   source_from_args)
from aesvc_vpr.errors import ConfigError

NAME = 'bag-eval'
HELP = "localise a rosbag's images against a map offline; Recall@N, PR curve, latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of bag-eval."""
    parser.add_argument('--mode', choices=('localization', 'loop_closure'),
                        default='localization',
                        help='localise against --map, or run the loop-closure detector on the '
                             'recording itself (no map; see docs/loop_closure.md)')
    parser.add_argument('--map', default='', help='map directory (from build-map)')
    add_source_arguments(parser)
    parser.add_argument('--head', default='', help="head file (default: the map's own head)")
    add_image_arguments(parser)
    add_backbone_arguments(parser, model_from="the map's; 'auto' without a map")
    parser.add_argument('--prefix-dim', type=int, default=64, help='embedding prefix searched')
    parser.add_argument('--index-type', default='flat', choices=('flat', 'ivf', 'hnsw'))
    parser.add_argument('--top-k', type=int, default=20, help='results per query (>= 20 for R@20)')
    parser.add_argument('--radius-m', type=float, default=25.0,
                        help='a map place within this distance of the ground truth is correct')
    add_filter_arguments(parser)
    add_loop_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Replay, score, print the table and write the report."""
    if args.list_topics:
        return list_topics(args.bag)
    if args.mode == 'loop_closure':
        return run_loop_closure(args)
    if not args.map:
        raise ConfigError('--map is required (a map directory from build-map)')
    from aesvc_vpr.bags.queries import plan_queries
    from aesvc_vpr.bags.reader import BagSet
    from aesvc_vpr.config import MatchConfig, SearchConfig
    from dataclasses import asdict

    from aesvc_vpr.replay.offline import localizer_settings, replay_bag, replay_parameters
    from aesvc_vpr.replay.report import check_report_dir, format_table, report_replay
    from aesvc_vpr.retrieval.localizer import Localizer
    from aesvc_vpr.retrieval.mapdb import MapDatabase

    mapdb = MapDatabase.load(args.map)
    source = source_from_args(args, mapdb.utm_zone)
    check_report_dir(args.out)          # before the work, so no result is lost at the end
    with BagSet(source.bags) as bags:
        plan = plan_queries(bags, source)      # bad topics fail here, before a model loads
        backbone_cfg = backbone_config(args, mapdb.backbone_name)
        localizer = Localizer.from_config(backbone_cfg, args.head, args.map,
                                          SearchConfig(args.prefix_dim, args.index_type),
                                          MatchConfig(top_k=args.top_k, radius_m=args.radius_m))
        filter_cfg = filter_config(args)
        frames = replay_bag(localizer, bags, plan, image_config(args), filter_cfg,
                            args.filter_odometry)
    parameters = replay_parameters(source, plan, localizer.mapdb, args.radius_m,
                                   images_unusable=frames.unusable,
                                   **localizer_settings(localizer), filter=asdict(filter_cfg),
                                   filter_odometry=args.filter_odometry)
    extra: dict[str, object] = {'mode': 'offline (bag-eval)',
                                **single_frame_extra(frames, localizer.mapdb.utm, args.radius_m)}
    scores, paths = report_replay(args.out, frames, localizer.mapdb.utm, args.radius_m,
                                  parameters, extra)
    print_summary(format_table(scores, f'bag-eval: {plan.image_topic} vs {args.map} (prefix '
                                       f'{localizer.prefix_dim}, radius {args.radius_m:g} m)'),
                  plan, paths, frames.unusable)
    return 0
