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
    add_ray_arguments(parser)


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --executor and the --ray-* flags (RayBuildConfig; docs/scale.md)."""
    from aesvc_vpr.config import RayBuildConfig
    defaults = RayBuildConfig()
    group = parser.add_argument_group('executor (docs/scale.md)')
    group.add_argument('--executor', choices=('local', 'ray'), default='local',
                       help="'local': this process (default); 'ray': shards over a Ray cluster")
    group.add_argument('--ray-address', default=defaults.address,
                       help='Ray cluster to join (default: $RAY_ADDRESS, else a local cluster '
                            'started for this build)')
    group.add_argument('--ray-workers', type=int, default=defaults.workers,
                       help="embedding actors (default: the cluster's CPUs / --ray-worker-cpus)")
    group.add_argument('--ray-worker-cpus', type=float, default=defaults.worker_cpus,
                       help='CPUs (and torch threads) per actor (default %(default)s)')
    group.add_argument('--ray-worker-gpus', type=float, default=defaults.worker_gpus,
                       help='GPUs per actor, where workers have GPUs (default %(default)s)')
    group.add_argument('--ray-object-store-mb', type=int, default=defaults.object_store_mb,
                       help="a local cluster's object store (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Build (or resume, or re-project) the map and print a one-line summary."""
    from aesvc_vpr.config import HeadConfig, RayBuildConfig, TrainConfig
    from aesvc_vpr.data.datasets import load_dataset
    from aesvc_vpr.retrieval.encoder import Encoder
    from aesvc_vpr.retrieval.mapbuild import build_map
    from aesvc_vpr.retrieval.ray_build import RayExecutor

    dataset = load_dataset(args.dataset, args.image_root)
    backbone_cfg = backbone_config(args)
    encoder = Encoder.load(backbone_cfg, args.head)
    executor = None
    if args.executor == 'ray':
        executor = RayExecutor(backbone_cfg, RayBuildConfig(
            address=args.ray_address, workers=args.ray_workers,
            worker_cpus=args.ray_worker_cpus, worker_gpus=args.ray_worker_gpus,
            object_store_mb=args.ray_object_store_mb))
    train = None
    if args.train_head:
        train_cfg = TrainConfig() if args.epochs is None else TrainConfig(epochs=args.epochs)
        train = (HeadConfig(), train_cfg)
    mapdb = build_map(dataset.database, args.map, encoder.backbone, batch_size=args.batch_size,
                      chunk_size=args.chunk_size, projector=encoder.projector, train=train,
                      source=str(args.dataset), max_failed_fraction=args.max_failed_fraction,
                      images=image_config(args), executor=executor)
    print(f'{mapdb.root}: {mapdb.count} entries ({len(mapdb.failed_images)} images failed), '
          f'{mapdb.backbone_name} raw {mapdb.raw.shape[1]}-d, embeddings '
          f'{mapdb.embeddings.shape[1]}-d, head {mapdb.head_fingerprint[:12] or "none"}, '
          f'zone {mapdb.utm_zone or "unknown"}')
    return 0
