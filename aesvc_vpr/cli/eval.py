"""``aesvc-vpr eval``: Recall@N and mAP@k of a map at several prefix sizes, with baselines."""

from __future__ import annotations

import argparse

from aesvc_vpr.cli._backbone import add_backbone_arguments, backbone_config
from aesvc_vpr.cli._images import add_image_arguments, image_config
from aesvc_vpr.config import DEFAULT_PREFIX_SIZES, FilterConfig, RecallConfig

NAME = 'eval'
HELP = "evaluate a map on a dataset's queries (standard VPR protocol) at several prefix sizes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of eval."""
    defaults = RecallConfig()
    parser.add_argument('dataset',
                        help='the dataset the map was built from (its queries are used)')
    parser.add_argument('map', help='map directory from build-map')
    parser.add_argument('--image-root', default=None, help='folder image names are relative to')
    parser.add_argument('--head', default='',
                        help="head file; default the map's own head, if it has one")
    parser.add_argument('--sizes', default=','.join(map(str, DEFAULT_PREFIX_SIZES)),
                        help='prefix sizes, comma-separated (default %(default)s)')
    parser.add_argument('--radius-m', type=float, default=None,
                        help="positives radius (default: the dataset's, else "
                        f'{defaults.radius_m})')
    parser.add_argument('--no-pca', action='store_true',
                        help='skip the PCA and PCA-whitening rows')
    parser.add_argument('--limit', type=int, default=0, help='use only the first N queries')
    parser.add_argument('--json', default='eval.json', help='report file (default %(default)s)')
    parser.add_argument('--plot', default='eval.png', help='plot file (default %(default)s)')
    parser.add_argument('--sequence', action='store_true',
                        help='also take the queries as one sequence in their order: Recall@1 '
                             'single-frame against the sequence filter '
                             '(docs/localization_filter.md)')
    parser.add_argument('--speed-mps', type=float, default=None,
                        help="the filter's speed prior (default: the filter's, "
                             f'{FilterConfig().speed_mps} m/s)')
    parser.add_argument('--period-s', type=float, default=1.0,
                        help='time between queries that carry no stamps (default %(default)s)')
    parser.add_argument('--warmup', type=int, default=20,
                        help='sequence frames left out of Recall@1 (default %(default)s)')
    add_image_arguments(parser)
    add_backbone_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Embed the queries, evaluate, and print the table."""
    from aesvc_vpr.common.fileio import check_writable
    from aesvc_vpr.data.datasets import load_dataset
    from aesvc_vpr.errors import ConfigError
    from aesvc_vpr.evaluation.map_eval import (evaluate_map, format_table, plot_recall,
                                               SequenceOptions, write_json)
    from aesvc_vpr.evaluation.sequence_eval import format_sequence_table
    from aesvc_vpr.retrieval.encoder import Encoder
    from aesvc_vpr.retrieval.mapdb import MapDatabase

    try:
        sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    except ValueError as err:
        raise ConfigError(f'--sizes must be comma-separated integers, got {args.sizes!r}') from err
    for flag, path in (('--json', args.json), ('--plot', args.plot)):
        try:
            check_writable(path)      # before the work, not after the table is printed
        except OSError as err:
            raise ConfigError(f'{flag} {path}: cannot write there ({err.strerror or err}); '
                              'choose a writable path') from err
    dataset = load_dataset(args.dataset, args.image_root)
    queries = dataset.queries
    if args.limit:
        queries = queries.subset(range(min(args.limit, len(queries))))
    radius_m = args.radius_m if args.radius_m is not None else dataset.radius_m
    cfg = RecallConfig(radius_m=radius_m)
    encoder = Encoder.load(backbone_config(args))
    mapdb = MapDatabase.load(args.map, encoder.backbone)
    encoder = encoder.with_head(args.head or mapdb.head_file)
    sequence = None
    if args.sequence:
        speed = {} if args.speed_mps is None else {'speed_mps': args.speed_mps}
        if args.period_s <= 0 or args.warmup < 0:
            raise ConfigError('--period-s must be > 0 and --warmup >= 0')
        sequence = SequenceOptions(FilterConfig(mode='hmm', **speed), args.warmup, args.period_s)
    report = evaluate_map(mapdb, queries, encoder, sizes, cfg, pca=not args.no_pca,
                          batch_size=args.batch_size, images=image_config(args),
                          sequence=sequence)
    report['dataset'] = str(args.dataset)
    print(format_table(report))
    if sequence is not None:
        print(format_sequence_table(report['sequence']))
    write_json(report, args.json)
    plot_recall(report, args.plot)
    print(f'wrote {args.json} and {args.plot}')
    return 0
