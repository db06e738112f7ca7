"""``aesvc-vpr index-map``: build a map's saved search index once, for large maps.

The node loads it memory-mapped with ``search.index_type: saved`` instead of building an index
in memory at every start (docs/scale.md).
"""

from __future__ import annotations

import argparse

NAME = 'index-map'
HELP = "build a map's saved (compressed, memory-mapped) search index over one prefix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of index-map."""
    from aesvc_vpr.index.saved import DEFAULT_NPROBE, DEFAULT_RECIPE, RECIPES
    parser.add_argument('map', help='map directory built by build-map')
    parser.add_argument('--prefix', type=int, required=True,
                        help='prefix searched (search.prefix_dim, or search.shortlist_dim for '
                             'a funnel)')
    parser.add_argument('--recipe', default=DEFAULT_RECIPE, choices=RECIPES,
                        help='index kind; benchmarks/bench_scale.py measures them '
                             '(default %(default)s)')
    parser.add_argument('--nprobe', type=int, default=DEFAULT_NPROBE,
                        help='inverted lists visited per query (default %(default)s)')


def run(args: argparse.Namespace) -> int:
    """Build and commit the index; print a one-line summary."""
    from aesvc_vpr.retrieval.map_index import index_map, saved_index_entry
    mapdb = index_map(args.map, args.prefix, args.recipe, args.nprobe)
    entry = saved_index_entry(mapdb)
    print(f'{mapdb.root}: {entry["recipe"]} index over prefix {entry["prefix_dim"]}, '
          f'{entry["count"]} entries, {entry["bytes"] / 2**20:.1f} MiB in {entry["name"]}, '
          f'built in {entry["build_s"]} s')
    return 0
