"""``aesvc-vpr build-map``: embed a dataset's database images into a map directory (resumable)."""

from __future__ import annotations

import argparse

from aesvc_vpr.cli._backbone import add_backbone_arguments, backbone_config
from aesvc_vpr.cli._images import add_image_arguments, image_config

NAME = 'build-map'
HELP = 'embed database images into a map directory; re-run to resume after an interruption'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of build-map."""
    parser.add_argument('dataset',
                        help='.mat dbStruct, .npz, .csv, or a folder with database/ and queries/')
    parser.add_argument('map', help='map directory to create or resume')
    parser.add_argument('--image-root', default=None, help='folder image names are relative to')
    parser.add_argument('--chunk-size', type=int, default=1024,
                        help='images per saved chunk: the most an interruption loses')
    head = parser.add_mutually_exclusive_group()
    head.add_argument('--head', default='', help='trained head file to project with')
    head.add_argument('--train-head', action='store_true',
                      help='train a head on the map (default settings) into '
                           'MAP/head-<sha12>.safetensors')
    parser.add_argument('--epochs', type=int, default=None, help='head training epochs')
    parser.add_argument('--max-failed-fraction', type=float, default=0.05,
                        help='fail the build (keeping what was embedded) when more than this '
                             'share of the images cannot be used (default %(default)s)')
    add_image_arguments(parser)
    add_backbone_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Build (or resume, or re-project) the map and print a one-line summary."""
    from aesvc_vpr.config import HeadConfig, TrainConfig
    from aesvc_vpr.data.datasets import load_dataset
    from aesvc_vpr.retrieval.encoder import Encoder
    from aesvc_vpr.retrieval.mapbuild import build_map

    dataset = load_dataset(args.dataset, args.image_root)
    encoder = Encoder.load(backbone_config(args), args.head)
    train = None
    if args.train_head:
        train_cfg = TrainConfig() if args.epochs is None else TrainConfig(epochs=args.epochs)
        train = (HeadConfig(), train_cfg)
    mapdb = build_map(dataset.database, args.map, encoder.backbone, batch_size=args.batch_size,
                      chunk_size=args.chunk_size, projector=encoder.projector, train=train,
                      source=str(args.dataset), max_failed_fraction=args.max_failed_fraction,
                      images=image_config(args))
    print(f'{mapdb.root}: {mapdb.count} entries ({len(mapdb.failed_images)} images failed), '
          f'{mapdb.backbone_name} raw {mapdb.raw.shape[1]}-d, embeddings '
          f'{mapdb.embeddings.shape[1]}-d, head {mapdb.head_fingerprint[:12] or "none"}, '
          f'zone {mapdb.utm_zone or "unknown"}')
    return 0
