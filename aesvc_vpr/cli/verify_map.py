"""``aesvc-vpr verify-map``: the full integrity check of a map (every byte of every file).

Loading a map checks sizes, array headers and sampled digests only, so that a large map starts
in seconds; this command compares each file's full sha256 with map.json and opens the saved
index, if any.
"""

from __future__ import annotations

import argparse

NAME = 'verify-map'
HELP = "check every file of a map against map.json's sha256 digests (the full check)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of verify-map."""
    parser.add_argument('map', help='map directory')


def run(args: argparse.Namespace) -> int:
    """Verify the map; print one line per checked map."""
    from aesvc_vpr.retrieval.map_index import load_saved_index, saved_index_entry
    from aesvc_vpr.retrieval.mapdb import MapDatabase
    mapdb = MapDatabase.load(args.map, kind=None, full_check=True)
    entry = saved_index_entry(mapdb)
    if entry is not None:
        load_saved_index(mapdb, entry['prefix_dim'])
    total = sum(e.get('bytes', 0) for e in mapdb.meta['files'].values())
    print(f'{mapdb.root}: ok, {len(mapdb.meta["files"])} files ({total / 2**20:.1f} MiB) match '
          f'map.json, {mapdb.count} entries'
          + (f', saved {entry["recipe"]} index for prefix {entry["prefix_dim"]}' if entry
             else ''))
    return 0
