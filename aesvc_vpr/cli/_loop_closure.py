"""``bag-eval --mode loop_closure``: the loop-closure detector over a recording, scored.

No map is needed: the detector builds its own from the recording's keyframes. Detector settings
are the LoopClosureConfig fields, given as ``--loop FIELD=VALUE`` (repeatable).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

import numpy as np

from aesvc_vpr.cli._backbone import backbone_config
from aesvc_vpr.config import LoopClosureConfig
from aesvc_vpr.errors import ConfigError


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags used only in loop-closure mode."""
    group = parser.add_argument_group('loop closure (--mode loop_closure)')
    fields = ', '.join(f.name for f in dataclasses.fields(LoopClosureConfig))
    group.add_argument('--loop', action='append', default=[], metavar='FIELD=VALUE',
                       help=f'a detector setting, repeatable; fields: {fields}')
    group.add_argument('--no-odometry', action='store_true',
                       help='do not give the ground-truth poses to the detector as odometry')


def loop_config(pairs: Sequence[str]) -> LoopClosureConfig:
    """Build a LoopClosureConfig from FIELD=VALUE strings, each converted to its field's type.

    Raises:
        ConfigError: malformed pair, unknown field, or a value the dataclass refuses.
    """
    defaults = LoopClosureConfig()
    changes: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition('=')
        if not sep or not hasattr(defaults, name.strip()):
            raise ConfigError(f'--loop {pair!r}: expected FIELD=VALUE with FIELD one of '
                              f'{[f.name for f in dataclasses.fields(LoopClosureConfig)]}')
        kind = type(getattr(defaults, name.strip()))
        try:
            changes[name.strip()] = kind(text.strip())
        except ValueError as err:
            raise ConfigError(f'--loop {pair!r}: {text!r} is not a valid {kind.__name__}') from err
    return dataclasses.replace(defaults, **changes)


def run_loop_closure(args: argparse.Namespace) -> int:
    """Embed the recording's images, run the detector, print and write the loop report."""
    from aesvc_vpr.bags.queries import FrameCounts, plan_queries
    from aesvc_vpr.bags.reader import BagSet
    from aesvc_vpr.cli._images import image_config
    from aesvc_vpr.cli._source import print_unusable, source_from_args
    from aesvc_vpr.evaluation.loop_eval import evaluate_loops
    from aesvc_vpr.replay.loops import format_loop_table, loop_frames, write_loop_report
    from aesvc_vpr.replay.offline import check_usable
    from aesvc_vpr.replay.report import check_report_dir
    from aesvc_vpr.retrieval.encoder import Encoder

    cfg = loop_config(args.loop)
    source = source_from_args(args, '')
    check_report_dir(args.out)          # before the work, so no result is lost at the end
    counts = FrameCounts()
    with BagSet(source.bags) as bags:
        plan = plan_queries(bags, source)     # bad topics fail here, before a model loads
        encoder = Encoder.load(backbone_config(args, 'auto'), args.head)
        # nested prefixes are a property of a trained head; raw output is searched whole
        prefix_dim = (encoder.check_prefix(args.prefix_dim) if encoder.projector is not None
                      else None)

        def embed(images: Sequence[np.ndarray]) -> np.ndarray:
            return encoder.embed(images)[1]

        frames = loop_frames(bags, plan, not args.no_odometry, image_config(args), counts)
        report = evaluate_loops(frames, cfg, radius_m=args.radius_m, prefix_dim=prefix_dim,
                                embed=embed)
    check_usable(counts, plan)
    backbone = encoder.backbone
    parameters = {
        'mode': 'loop_closure (bag-eval)', 'bags': list(source.bags),
        'image_topic': plan.image_topic, 'pose_topic': plan.pose_topic,
        'backbone': backbone.name, 'backbone_fingerprint': backbone.fingerprint,
        'head_fingerprint': encoder.head_fingerprint,
        'prefix_dim': prefix_dim, 'radius_m': args.radius_m,
        'odometry': not args.no_odometry, 'loop_closure': dataclasses.asdict(cfg),
        'images_unusable': dict(counts.refused)}
    paths = write_loop_report(args.out, report, parameters)
    prefix = prefix_dim or 'full'
    print(format_loop_table(report, f'bag-eval loop closure: {plan.image_topic} '
                                    f'(prefix {prefix}, radius {args.radius_m:g} m)'))
    print(f'{plan.truth.skipped} of {plan.total} images had no ground truth and were skipped')
    print_unusable(counts.refused, counts.total)
    print('report: ' + ', '.join(str(p) for p in paths.values()))
    return 0
