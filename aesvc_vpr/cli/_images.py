"""Decode-policy flags shared by the subcommands that read images (build-map, eval, bag-eval)."""

from __future__ import annotations

import argparse

from aesvc_vpr.config import ImageConfig


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --min-image-pixels and --max-image-pixels (ImageConfig)."""
    defaults = ImageConfig()
    group = parser.add_argument_group('images')
    group.add_argument('--min-image-pixels', type=int, default=defaults.min_pixels,
                       help='smaller images are refused and listed (default %(default)s)')
    group.add_argument('--max-image-pixels', type=int, default=defaults.max_pixels,
                       help='larger images are refused from their header, before decoding '
                            '(default %(default)s)')


def image_config(args: argparse.Namespace) -> ImageConfig:
    """Return the ImageConfig the flags describe (validated by the dataclass)."""
    return ImageConfig(min_pixels=args.min_image_pixels, max_pixels=args.max_image_pixels)
