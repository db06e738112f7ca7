"""The ``aesvc-vpr`` command: one subcommand per module in this package.

Each module here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are discovered, so a new subcommand is one new file. Heavy imports (torch, rclpy) belong
inside ``run`` so that ``aesvc-vpr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

from aesvc_vpr.errors import VprError


def build_parser() -> argparse.ArgumentParser:
    """Collect every subcommand module into one argparse parser."""
    parser = argparse.ArgumentParser(
        prog='aesvc-vpr', description='AE-SVC / (SS)2D visual place recognition tools.')
    parser.add_argument('-v', '--verbose', action='count', default=0,
                        help='more logging (-vv: debug)')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith('_'):
            continue
        module = importlib.import_module(f'{__name__}.{info.name}')
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a VprError becomes ``error: ...`` on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format='%(levelname)s %(name)s: %(message)s')
    # faiss logs which CPU build it loads (six INFO lines, one a ModuleNotFoundError for the
    # AVX2 build it tries first): noise that looks like failure unless asked for with -vv
    logging.getLogger('faiss.loader').setLevel(logging.DEBUG if args.verbose > 1
                                               else logging.WARNING)
    try:
        return int(args._run(args))
    except VprError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except OSError as err:      # a file the command had to touch; the message names it
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
