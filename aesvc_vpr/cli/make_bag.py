"""``aesvc-vpr make-bag``: a dataset's query images + ground truth as a replayable rosbag2."""

from __future__ import annotations

import argparse
import logging

NAME = 'make-bag'
HELP = 'write a dataset split as a rosbag2 (camera images + Odometry ground truth)'

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of make-bag."""
    parser.add_argument('--dataset', required=True,
                        help='.mat dbStruct, .npz, .csv, or a folder with database/ and queries/')
    parser.add_argument('--image-root', default=None, help='folder image names are relative to')
    parser.add_argument('--split', choices=('queries', 'database'), default='queries')
    parser.add_argument('--out', required=True, help='bag directory to create')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    parser.add_argument('--image-format', choices=('raw', 'jpeg', 'png'), default='raw',
                        help='raw: sensor_msgs/Image rgb8; jpeg/png: CompressedImage')
    parser.add_argument('--image-topic', default='/camera/image_raw')
    parser.add_argument('--pose-topic', default='/ground_truth/odom')
    parser.add_argument('--period-s', type=float, default=0.1,
                        help='time between frames when the dataset has no capture stamps')
    parser.add_argument('--limit', type=int, default=0, help='write only the first N images')
    parser.add_argument('--force', action='store_true', help='replace an existing bag')


def run(args: argparse.Namespace) -> int:
    """Write the bag; prints where it went and what is in it."""
    from aesvc_vpr.common.progress import progress_bar

    from aesvc_vpr.bags.writer import BagLayout, write_query_bag
    from aesvc_vpr.data.bag_frames import frames_from_set
    from aesvc_vpr.data.datasets import load_dataset

    dataset = load_dataset(args.dataset, args.image_root)
    images = getattr(dataset, args.split)
    if args.limit:
        images = images.subset(range(min(args.limit, len(images))))
    layout = BagLayout(storage=args.storage, image_topic=args.image_topic,
                       pose_topic=args.pose_topic, image_format=args.image_format)
    frames = progress_bar(frames_from_set(images, args.period_s), total=len(images),
                          desc='writing bag', unit='img')
    count = write_query_bag(args.out, frames, layout, overwrite=args.force)
    print(f'{args.out}: {count} images ({args.split}) on {layout.image_topic} '
          f'({args.image_format}), Odometry ground truth on {layout.pose_topic} '
          f'(x/y = UTM {images.utm_zone or "easting/northing"}), {args.storage}')
    return 0
