"""``aesvc-vpr make-town``: render the synthetic geotagged town (the demo's and tests' dataset)."""

from __future__ import annotations

import argparse

NAME = 'make-town'
HELP = ('render a synthetic town: database/ + queries/ (@UTM@ names), a NetVLAD dbStruct .mat, '
        'a rosbag2 of the query run and truth.json')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the make-town flags."""
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--db', type=int, default=1000, help='database images (%(default)s)')
    parser.add_argument('--queries', type=int, default=300, help='query images (%(default)s)')
    parser.add_argument('--size', type=int, default=224, help='image side in px (%(default)s)')
    parser.add_argument('--difficulty', type=float, default=0.5,
                        help='query appearance and pose change, 0 none .. 1 hard .. 2 '
                             '(%(default)s)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=2, help='render processes (%(default)s)')
    parser.add_argument('--origin', type=float, nargs=2, default=(584500.0, 4476900.0),
                        metavar=('EASTING', 'NORTHING'),
                        help='UTM position of the town centre (default: Pittsburgh)')
    parser.add_argument('--zone', default='17T', help='UTM zone of --origin (%(default)s)')
    parser.add_argument('--bag-format', choices=('mcap', 'sqlite3'), default='mcap')
    parser.add_argument('--bag-images', choices=('raw', 'jpeg'), default='raw',
                        help='raw: sensor_msgs/Image rgb8; jpeg: CompressedImage')
    parser.add_argument('--force', action='store_true',
                        help='replace the outputs of an earlier make-town in --out')


def run(args: argparse.Namespace) -> int:
    """Generate the town; prints where everything went."""
    from aesvc_vpr.data.town import make_town

    town = make_town(args.out, n_db=args.db, n_query=args.queries, size=args.size,
                     difficulty=args.difficulty, seed=args.seed,
                     origin_utm=tuple(args.origin), zone=args.zone, workers=args.workers,
                     bag_format=args.bag_format, bag_images=args.bag_images,
                     overwrite=args.force)
    print(f'{town.root}: {len(town.database)} database + {len(town.queries)} query images '
          f'({args.size}x{args.size}, difficulty {args.difficulty}, seed {args.seed}) '
          f'in {town.seconds:.1f} s')
    print(f'  folders  {town.root / "database"}, {town.root / "queries"}')
    print(f'  dbStruct {town.mat_path}')
    print(f'  bag      {town.bag_path} ({args.bag_format}; /camera/image_raw, /odom in UTM)')
    print(f'  truth    {town.truth_path}')
    return 0
