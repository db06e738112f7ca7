"""``aesvc-vpr bag-play``: replay a recording through the live ROS node and score it (mode 2)."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict
from pathlib import Path

from aesvc_vpr.cli._filter import add_filter_arguments, filter_config, single_frame_extra
from aesvc_vpr.cli.bag_eval import (add_source_arguments, list_topics, print_summary,
                                    source_from_args)
from aesvc_vpr.errors import ConfigError

NAME = 'bag-play'
HELP = "publish a rosbag's images to the running VPR node, record and score its answers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of bag-play."""
    parser.add_argument('--map', default='',
                        help='map directory the node runs (scoring uses its positions)')
    add_source_arguments(parser)
    parser.add_argument('--rate', type=float, default=1.0,
                        help='playback speed as a multiple of real time (bag receive times)')
    parser.add_argument('--spawn-node', action=argparse.BooleanOptionalAction, default=True,
                        help='start aesvc_vpr.ros.node in a subprocess with these settings '
                             '(--no-spawn-node: talk to a node that is already running)')
    parser.add_argument('--namespace', default='/vpr_replay',
                        help="the node's namespace (inputs <ns>/image and <ns>/image/compressed)")
    parser.add_argument('--node-name', default='vpr_node')
    parser.add_argument('--head', default='', help='head file for a spawned node')
    parser.add_argument('--backbone', default='',
                        help="backbone of a spawned node (default: the map's)")
    parser.add_argument('--prefix-dim', type=int, default=64)
    parser.add_argument('--top-k', type=int, default=20,
                        help='candidates the spawned node publishes (>= 20 for R@20)')
    parser.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                        help='another parameter for a spawned node (repeatable)')
    parser.add_argument('--radius-m', type=float, default=25.0)
    parser.add_argument('--image-reliability', choices=('reliable', 'best_effort'),
                        default='reliable', help='QoS of the published images')
    parser.add_argument('--startup-timeout-s', type=float, default=120.0)
    parser.add_argument('--settle-s', type=float, default=5.0,
                        help='wait this long without news for the last answers')
    add_filter_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Play, record, score, print the table and write the report."""
    if args.list_topics:
        return list_topics(args.bag)
    if not args.map:
        raise ConfigError('--map is required (the map the node runs)')
    from aesvc_vpr.bags.queries import play_messages, plan_queries
    from aesvc_vpr.bags.reader import BagSet
    from aesvc_vpr.replay.live import frames_from_outputs, node_params, NodeProcess, PlayConfig
    from aesvc_vpr.replay.offline import replay_parameters
    from aesvc_vpr.replay.report import format_table, report_replay
    from aesvc_vpr.retrieval.mapdb import MapDatabase
    from aesvc_vpr.replay.report import check_report_dir
    from aesvc_vpr.ros.bag_player import play_bag

    mapdb = MapDatabase.load(args.map)
    source = source_from_args(args, mapdb.utm_zone)
    check_report_dir(args.out)          # before the work, so no result is lost at the end
    cfg = PlayConfig(args.rate, args.namespace, args.node_name, args.startup_timeout_s,
                     args.settle_s, args.image_reliability)
    filter_cfg = filter_config(args)
    filtered = filter_cfg.mode != 'off'
    settings = {'mode': 'live node (bag-play)', 'rate': args.rate, 'spawned': args.spawn_node,
                'namespace': cfg.namespace, 'node_name': cfg.node_name, 'top_k': args.top_k,
                'filter': asdict(filter_cfg), 'filter_odometry': args.filter_odometry}
    node: NodeProcess | None = None
    with BagSet(source.bags) as bags:
        plan = plan_queries(bags, source)
        compressed = plan.image_type.endswith('CompressedImage')
        if args.spawn_node:
            # absolute paths: the node resolves them in its own process
            head = str(Path(args.head).resolve()) if args.head else ''
            params = node_params(str(Path(mapdb.root).resolve()), head,
                                 args.backbone or mapdb.backbone_name, args.prefix_dim,
                                 args.top_k, filter_cfg.mode)
            params['image_transport'] = 'compressed' if compressed else 'raw'
            params['filter.speed_mps'] = filter_cfg.speed_mps
            node = NodeProcess(cfg, params, args.param)
            settings['node_parameters'] = {**params, 'overrides': args.param}
        messages = play_messages(bags, plan, poses=args.filter_odometry)
        odometry_topic = plan.pose_topic if args.filter_odometry else ''
        with node if node is not None else contextlib.nullcontext():
            played = play_bag(messages, plan.total, cfg, compressed, node, odometry_topic,
                              filtered)
    frames = frames_from_outputs(plan, played, mapdb.utm, mapdb.yaw, args.top_k, filtered)
    dropped = played.dropped
    extra = {'published': len(played.sent_s), 'answered_total': len(played.outputs),
             'dropped_frames': len(dropped), 'dropped_stamps_ns': dropped,
             **single_frame_extra(frames, mapdb.utm, args.radius_m)}
    scores, paths = report_replay(args.out, frames, mapdb.utm, args.radius_m,
                                  replay_parameters(source, plan, mapdb, args.radius_m,
                                                    **settings), extra)
    print_summary(format_table(scores, f'bag-play: {plan.image_topic} -> {cfg.topic("image")} '
                                       f'x{args.rate:g}, radius {args.radius_m:g} m'),
                  plan, paths)
    print(f'published {len(played.sent_s)} images, the node answered {len(played.outputs)}, '
          f'dropped {len(dropped)}')
    return 0
