"""``aesvc-vpr calibrate``: fit P(top-1 correct | score, margin, spread), store it in the map."""

from __future__ import annotations

import argparse

from aesvc_vpr.cli._backbone import add_backbone_arguments, backbone_config
from aesvc_vpr.cli._images import add_image_arguments, image_config
from aesvc_vpr.config import MatchConfig, SearchConfig

NAME = 'calibrate'
HELP = ("fit a calibrated match probability on a dataset's labelled queries; stored in the map "
        'and covered by its hashes; reliability diagram + held-out ECE')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of calibrate."""
    parser.add_argument('dataset', help='a dataset with labelled queries near the map')
    parser.add_argument('map', help='map directory from build-map (the calibration goes there)')
    parser.add_argument('--image-root', default=None, help='folder image names are relative to')
    parser.add_argument('--head', default='', help="head file (default: the map's own head)")
    parser.add_argument('--prefix-dim', type=int, default=SearchConfig().prefix_dim,
                        help='the prefix the node searches (default %(default)s)')
    parser.add_argument('--top-k', type=int, default=MatchConfig().top_k,
                        help='the candidates the node publishes (default %(default)s)')
    parser.add_argument('--radius-m', type=float, default=None,
                        help="a top-1 within this distance is correct (default: the dataset's)")
    parser.add_argument('--held-out', type=float, default=0.3,
                        help='fraction of queries kept out of the fit for the ECE')
    parser.add_argument('--limit', type=int, default=0, help='use only the first N queries')
    parser.add_argument('--plot', default='reliability.png',
                        help='reliability diagram PNG (default %(default)s)')
    parser.add_argument('--dry-run', action='store_true',
                        help='fit and report, but do not store the calibration in the map')
    add_image_arguments(parser)
    add_backbone_arguments(parser, model_from="the map's")


def run(args: argparse.Namespace) -> int:
    """Fit, plot, store, print the held-out ECE."""
    import json
    from pathlib import Path

    from aesvc_vpr.data.datasets import load_dataset
    from aesvc_vpr.errors import ConfigError
    from aesvc_vpr.evaluation.calibration_eval import (calibrate_localizer, calibration_summary,
                                                       plot_reliability)
    from aesvc_vpr.retrieval.calibration import store_calibration
    from aesvc_vpr.retrieval.localizer import Localizer
    from aesvc_vpr.retrieval.mapdb import MapDatabase

    if not 0.05 <= args.held_out <= 0.9:
        raise ConfigError(f'--held-out must be in [0.05, 0.9], got {args.held_out}')
    dataset = load_dataset(args.dataset, args.image_root)
    queries = dataset.queries
    if args.limit:
        queries = queries.subset(range(min(args.limit, len(queries))))
    radius_m = args.radius_m if args.radius_m is not None else dataset.radius_m
    mapdb = MapDatabase.load(args.map)
    localizer = Localizer.from_config(backbone_config(args, mapdb.backbone_name), args.head,
                                      args.map, SearchConfig(prefix_dim=args.prefix_dim),
                                      MatchConfig(top_k=args.top_k, radius_m=radius_m))
    calibration, held = calibrate_localizer(localizer, queries, args.held_out,
                                            args.batch_size, image_config(args))
    summary = calibration_summary(calibration)
    plot_reliability(held['probability'], held['correct'], summary['ece'], Path(args.plot),
                     title=f'{args.map}, prefix {args.prefix_dim}, top-{args.top_k}, '
                           f'{radius_m:g} m')
    print(json.dumps(summary))
    if not args.dry_run:
        path = store_calibration(args.map, calibration)
        print(f'stored {path}; ECE {summary["ece"]:.4f} on {summary["queries"]} held-out '
              f'queries; reliability diagram {args.plot}')
    return 0
