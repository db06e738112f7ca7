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
    from aesvc_vpr.config import SearchConfig
    from aesvc_vpr.index.saved import DEFAULT_RECIPE, RECIPES
    from aesvc_vpr.index.tuning import TARGET_RECALL
    parser.add_argument('map', help='map directory built by build-map')
    parser.add_argument('--prefix', type=int, required=True,
                        help='prefix searched (search.prefix_dim, or search.shortlist_dim for '
                             'a funnel)')
    parser.add_argument('--recipe', default=DEFAULT_RECIPE, choices=RECIPES,
                        help='index kind; benchmarks/bench_scale.py measures them '
                             '(default %(default)s)')
    parser.add_argument('--nprobe', default='auto', type=_nprobe,
                        help='inverted lists visited per query, or auto: the smallest that '
                             'reaches --target-recall, measured on the map (default auto)')
    parser.add_argument('--target-recall', type=float, default=TARGET_RECALL,
                        help='Recall@1 and @10 against exact search that auto reaches '
                             '(default %(default)s)')
    parser.add_argument('--shortlist-k', type=int, default=SearchConfig().shortlist_k,
                        help="the node's search.shortlist_k that auto measures with (default "
                             '%(default)s)')


def _nprobe(value: str) -> int | None:
    """Return None for 'auto', else a positive integer."""
    if value == 'auto':
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {value!r}")
    return number


def run(args: argparse.Namespace) -> int:
    """Build and commit the index; print a one-line summary."""
    from aesvc_vpr.retrieval.map_index import index_map, saved_index_entry
    mapdb = index_map(args.map, args.prefix, args.recipe, args.nprobe, args.shortlist_k,
                      args.target_recall)
    entry = saved_index_entry(mapdb)
    print(f'{mapdb.root}: {entry["recipe"]} index over prefix {entry["prefix_dim"]}, '
          f'{entry["count"]} entries, {entry["bytes"] / 2**20:.1f} MiB in {entry["name"]}, '
          f'built in {entry["build_s"]} s, nprobe {entry["nprobe"]}')
    tuning = entry.get('tuning')
    if tuning:
        print(f'  measured on {tuning["queries"]} held-out queries with shortlist '
              f'{tuning["shortlist_k"]}: Recall@1 {tuning["recall_at_1"]}, Recall@10 '
              f'{tuning["recall_at_10"]} against exact search'
              + ('' if tuning['reached'] else f' (short of {tuning["target"]}: raise '
                 '--shortlist-k)'))
    return 0
