"""Backbone flags shared by the subcommands that embed images (build-map, eval, ...)."""

from __future__ import annotations

import argparse

from aesvc_vpr.config import (BackboneConfig, DESCRIPTORS, ONNX_CHANNELS, ONNX_LAYOUTS,
                              ONNX_POOLINGS, ONNX_PRESETS, ONNX_RESIZES, OnnxConfig, RUNTIMES)


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
                       help="'auto', 'patchgrid', a timm DINOv2 name, or 'onnx' with --weights "
                            "MODEL.onnx (also 'onnx:MODEL.onnx') (default: "
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
    add_onnx_arguments(parser)


def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the --onnx-* flags: OnnxConfig, the pre-processing of an ONNX model."""
    defaults = OnnxConfig()
    group = parser.add_argument_group('ONNX model (--model onnx; docs/backbone.md)')
    group.add_argument('--onnx-preset', choices=(*ONNX_PRESETS, 'custom'),
                       default=defaults.preset,
                       help="value scaling; 'custom' takes --onnx-scale/offset/mean/std "
                            '(default %(default)s)')
    group.add_argument('--onnx-input-size', type=int, default=defaults.input_size,
                       help="square input side; 0: the model's own (default %(default)s)")
    group.add_argument('--onnx-resize', choices=ONNX_RESIZES, default=defaults.resize,
                       help='stretch, or keep the aspect ratio and centre-crop')
    group.add_argument('--onnx-channels', choices=ONNX_CHANNELS, default=defaults.channels)
    group.add_argument('--onnx-layout', choices=ONNX_LAYOUTS, default=defaults.layout)
    group.add_argument('--onnx-scale', type=float, default=defaults.scale)
    group.add_argument('--onnx-offset', type=float, default=defaults.offset)
    group.add_argument('--onnx-mean', type=float, nargs=3, default=defaults.mean)
    group.add_argument('--onnx-std', type=float, nargs=3, default=defaults.std)
    group.add_argument('--onnx-output', default=defaults.output,
                       help="output to read (default: the model's first)")
    group.add_argument('--onnx-pooling', choices=ONNX_POOLINGS, default=defaults.pooling,
                       help='pool a spatial map or tokens (gem uses --gem-p)')
    group.add_argument('--onnx-normalised', action='store_true',
                       help='the output is L2-normalised already (checked at load)')


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
                          batch_size=args.batch_size, allow_download=args.allow_download,
                          onnx=OnnxConfig(
                              preset=args.onnx_preset, input_size=args.onnx_input_size,
                              resize=args.onnx_resize, channels=args.onnx_channels,
                              layout=args.onnx_layout, scale=args.onnx_scale,
                              offset=args.onnx_offset, mean=tuple(args.onnx_mean),
                              std=tuple(args.onnx_std), output=args.onnx_output,
                              pooling=args.onnx_pooling, normalised=args.onnx_normalised))
