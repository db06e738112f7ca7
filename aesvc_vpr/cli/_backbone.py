"""Backbone flags shared by the subcommands that embed images (build-map, eval, ...)."""

from __future__ import annotations

import argparse

from aesvc_vpr.config import BackboneConfig, DESCRIPTORS, RUNTIMES


def add_backbone_arguments(parser: argparse.ArgumentParser, model_from: str = '') -> None:
    """Add the flags of every BackboneConfig field: --model, --weights, --runtime, ...

    Args:
        parser: the subcommand's parser.
        model_from: where the model comes from when --model is not given (for example "the
            map's"); empty means BackboneConfig's default.
    """
    defaults = BackboneConfig()
    group = parser.add_argument_group('backbone')
    group.add_argument('--model', '--backbone', dest='model',
                       default='' if model_from else defaults.model_name,
                       help="'auto', 'patchgrid' or a timm DINOv2 name (default: "
                            f"{model_from or '%(default)s'})")
    group.add_argument('--weights', default=defaults.weights,
                       help='weights file or Hugging Face folder (default: the usual caches)')
    group.add_argument('--input-size', type=int, default=defaults.input_size)
    group.add_argument('--descriptor', choices=DESCRIPTORS, default=defaults.descriptor)
    group.add_argument('--gem-p', type=float, default=defaults.gem_p,
                       help='GeM power for the gem descriptors (default %(default)s)')
    group.add_argument('--runtime', choices=RUNTIMES, default=defaults.runtime)
    group.add_argument('--calibration-images', default=defaults.calibration_images,
                       help='image folder that openvino-int8 calibrates on (default: rendered '
                            'street views)')
    group.add_argument('--device', default=defaults.device)
    group.add_argument('--batch-size', type=int, default=defaults.batch_size,
                       help='images per forward pass (default %(default)s)')
    group.add_argument('--allow-download', action='store_true',
                       help="fetch Meta's DINOv2 checkpoint into the torch.hub cache when no "
                            'weights are found (needs internet; off by default)')


def backbone_config(args: argparse.Namespace, model_name: str = '') -> BackboneConfig:
    """Return the BackboneConfig the flags describe (validated by the dataclass).

    Args:
        args: parsed flags from ``add_backbone_arguments``.
        model_name: the model to use when --model was not given.
    """
    return BackboneConfig(model_name=args.model or model_name, weights=args.weights,
                          input_size=args.input_size, descriptor=args.descriptor,
                          gem_p=args.gem_p, device=args.device, runtime=args.runtime,
                          calibration_images=args.calibration_images,
                          batch_size=args.batch_size, allow_download=args.allow_download)
