"""``aesvc-vpr train-head``: train an AE-SVC + (SS)2D head on raw backbone embeddings.

The input is an ``.npy`` file of (N, D) raw embeddings, or a map directory (its ``raw`` array and
backbone name are used). The output is one ``.safetensors`` head file; its JSON metadata lives
inside the safetensors header (see docs/head.md). Every HeadConfig and TrainConfig field has a
flag named after it (``--latent-dim``, ``--tau``, ``--size-weights 1,1,2,...``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from aesvc_vpr.config import HeadConfig, TrainConfig

NAME = 'train-head'
HELP = 'train an AE-SVC + (SS)2D projection head on raw embeddings (.npy or a map directory)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the input/output flags and one flag per HeadConfig/TrainConfig field."""
    parser.add_argument('embeddings',
                        help='.npy file of (N, D) raw embeddings, or a map directory')
    parser.add_argument('--out', required=True, help='head file to write (.safetensors)')
    parser.add_argument('--backbone', default='',
                        help='backbone name stored in the head (required for .npy input; a map '
                             'supplies its own and must agree if both are given)')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    for cls, title in ((HeadConfig, 'head'), (TrainConfig, 'training')):
        group = parser.add_argument_group(title)
        for field in dataclasses.fields(cls):
            default = field.default
            is_tuple = isinstance(default, tuple)
            shown = (','.join(str(v) for v in default) or 'none') if is_tuple else default
            group.add_argument(f'--{field.name.replace("_", "-")}', dest=field.name,
                               type=_csv(type(default[0]) if default else float)
                               if is_tuple else type(default),
                               default=default, metavar='A,B,...' if is_tuple else None,
                               help=f'{cls.__name__}.{field.name} (default {shown})')


def _csv(kind: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(item) for item in text.split(',') if item.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f'expected comma-separated {kind.__name__}s, got '
                                             f'{text!r}') from err
    return parse


def run(args: argparse.Namespace) -> int:
    """Load the embeddings, train, write the head and print the final loss terms."""
    import numpy as np

    from aesvc_vpr.errors import ConfigError, DatasetError
    from aesvc_vpr.head.training import train_head

    head_cfg = HeadConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(HeadConfig)})
    train_cfg = TrainConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    source = Path(args.embeddings)
    if source.is_dir():
        from aesvc_vpr.retrieval.mapdb import MapDatabase
        mapdb = MapDatabase.load(source, kind=None)      # a keyframe store's raw rows train too
        raw, backbone = mapdb.raw, mapdb.backbone_name
        # positions choose the epochs; a keyframe store may lack some (no odometry)
        utm = mapdb.utm if np.isfinite(mapdb.utm).all() else None
        if args.backbone and args.backbone != backbone:
            raise ConfigError(f'--backbone {args.backbone!r} but map {source} was built with '
                              f'{backbone!r}; drop --backbone or use a matching map')
    else:
        if not args.backbone:
            raise ConfigError(f'{source}: --backbone NAME is required for .npy input (the head '
                              'records which backbone made the embeddings)')
        try:
            raw = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DatasetError(f'{source}: cannot read embeddings as .npy ({err})') from err
        backbone, utm = args.backbone, None
    path = train_head(raw, backbone, head_cfg, train_cfg, args.out, not args.no_progress, utm)
    from aesvc_vpr.head.projector import Projector
    projector = Projector.load(path)
    print(f'{path}: {backbone} {projector.input_dim}-d -> {projector.output_dim}-d, prefixes '
          f'{list(projector.prefix_sizes)}, trained on {raw.shape[0]} embeddings, sha256 '
          f'{projector.fingerprint[:12]}')
    for key, value in projector.head.meta.report.items():
        print(f'  {key:12s} {value:.6g}')
    return 0
