"""A map's saved search index: built once beside the map, named in map.json, mapped at load.

``index_map`` trains a compressed index (``index.saved``) over one prefix of the map's stored
embeddings and commits it like any map file: written under a temporary name, renamed to
``index-<sha12>.faiss``, then named in a new map.json together with what it was built from
(prefix, recipe, row count and the sha256 of the embeddings file). ``load_saved_index`` refuses
an index that no longer fits its map with one MapError that says how to rebuild it. A map
rewritten by build-map drops its index entry (the index described other embeddings).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import time
from typing import Any

from aesvc_vpr.config import SearchConfig
from aesvc_vpr.errors import MapError, SearchError
from aesvc_vpr.index.saved import DEFAULT_NPROBE, DEFAULT_RECIPE, SavedIndex
from aesvc_vpr.index.tuning import TARGET_RECALL, tune_nprobe
from aesvc_vpr.retrieval.map_schema import reindex_hint
from aesvc_vpr.retrieval.map_writes import commit, map_writer_lock, put_file_from
from aesvc_vpr.retrieval.mapdb import MapDatabase

log = logging.getLogger(__name__)

INDEX_ROLE = 'index'


def index_map(root: str | os.PathLike, prefix_dim: int, recipe: str = DEFAULT_RECIPE,
              nprobe: int | None = DEFAULT_NPROBE,
              shortlist_k: int = SearchConfig().shortlist_k,
              target_recall: float = TARGET_RECALL) -> MapDatabase:
    """Build the saved index of a map over ``prefix_dim`` and commit it into map.json.

    Args:
        root: map directory (a localisation map).
        prefix_dim: the prefix searched by the index.
        recipe: one of ``index.saved.RECIPES``.
        nprobe: inverted lists visited per query, stored with the index; None measures the
            smallest that reaches ``target_recall`` (``index.tuning``) and stores the figures.
        shortlist_k: the node's ``search.shortlist_k`` the measurement is made for.
        target_recall: Recall@1 and @10 against exact search that a measured nprobe reaches.

    Returns:
        The map, loaded again with its new index entry.

    Raises:
        MapError: no usable map, a bad prefix or recipe, too few rows, another writer, or a
            write failure (the previous map.json and index stay).
    """
    root = Path(root)
    with map_writer_lock(root):
        mapdb = MapDatabase.load(root)
        start = time.perf_counter()
        try:
            index = SavedIndex.build(mapdb.store, prefix_dim, recipe,
                                     DEFAULT_NPROBE if nprobe is None else nprobe)
            build_s = time.perf_counter() - start
            tuning = None if nprobe is not None else tune_nprobe(index, mapdb.store,
                                                                 shortlist_k, target_recall)
        except SearchError as err:
            raise MapError(f'{root}: cannot build the saved index ({err})') from err
        tmp = root / f'.index.{os.getpid()}.tmp'
        try:
            index.save(tmp)
            entry = put_file_from(root, INDEX_ROLE, '.faiss', tmp)
            entry.update(prefix_dim=prefix_dim, recipe=recipe, nprobe=index.nprobe,
                         count=index.count,
                         source_sha256=mapdb.meta['files'][mapdb.store_role]['sha256'],
                         build_s=round(build_s, 1))
            if tuning is not None:
                entry['tuning'] = tuning.as_dict()
            meta = dict(mapdb.meta)
            meta['files'] = {**meta['files'], INDEX_ROLE: entry}
            commit(root, meta)
        except (OSError, RuntimeError) as err:
            raise MapError(f'{root}: cannot write the saved index ({err}); the previous map is '
                           'unchanged') from err
        finally:
            tmp.unlink(missing_ok=True)
    log.info('%s: saved %s index over prefix %d, %d entries, %.1f MiB, built in %.1f s', root,
             recipe, prefix_dim, index.count, index.nbytes / 2**20, build_s)
    if tuning is not None and not tuning.reached:
        log.warning('%s: no nprobe reached Recall@1/@10 %.2f with shortlist %d (at nprobe %d: '
                    '%.3f / %.3f); raise search.shortlist_k and index again', root,
                    target_recall, shortlist_k, tuning.nprobe, tuning.recall_at_1,
                    tuning.recall_at_10)
    return MapDatabase.load(root)


def saved_index_entry(mapdb: MapDatabase) -> dict | None:
    """Return the map.json entry of the map's saved index, None when it has none."""
    return mapdb.meta['files'].get(INDEX_ROLE)


def saved_index_for(mapdb: MapDatabase, prefix_dim: int) -> dict[str, Any]:
    """Return the map.json entry of the saved index for ``prefix_dim``, reading no index file.

    Raises:
        MapError: the map has no saved index, or one for another prefix.
    """
    entry = saved_index_entry(mapdb)
    if entry is None or entry['prefix_dim'] != prefix_dim:
        hint = reindex_hint(mapdb.root, prefix_dim, entry['recipe'] if entry else DEFAULT_RECIPE)
        have = f'one for prefix {entry["prefix_dim"]}' if entry else 'none'
        raise MapError(f'{mapdb.root}: no saved index for prefix {prefix_dim} (the map has '
                       f'{have}); {hint}, or search with search.index_type flat')
    return entry


def load_saved_index(mapdb: MapDatabase, prefix_dim: int) -> SavedIndex:
    """Memory-map the map's saved index for ``prefix_dim``.

    The file's size and sampled digest were checked when the map loaded.

    Raises:
        MapError: no saved index for this prefix, or one that is corrupt or does not match
            the map's embeddings; the message says how to rebuild it.
    """
    entry = saved_index_for(mapdb, prefix_dim)
    hint = reindex_hint(mapdb.root, prefix_dim, entry['recipe'])
    path = mapdb.root / entry['name']
    if entry['source_sha256'] != mapdb.meta['files'][mapdb.store_role]['sha256'] \
            or entry['count'] != mapdb.count:
        raise MapError(f'{path}: the saved index was built from other embeddings than the '
                       f'map holds; {hint}')
    try:
        index = SavedIndex.load(path, prefix_dim, entry['recipe'], entry['nprobe'])
    except SearchError as err:
        raise MapError(f'{err}; {hint}') from err
    if index.count != mapdb.count:
        raise MapError(f'{path}: the saved index holds {index.count} entries but the map '
                       f'{mapdb.count}; {hint}')
    return index


def index_figures(mapdb: MapDatabase, shortlist_k: int) -> dict[str, object]:
    """Diagnostics of the map's saved index: its nprobe and, when measured, its recall.

    The recall holds for the shortlist it was measured with; a node searching with a shorter
    one gets less, which the 'index_recall' value says.
    """
    entry = saved_index_entry(mapdb)
    if entry is None:
        return {}
    values: dict[str, object] = {'index_nprobe': entry['nprobe']}
    tuning = entry.get('tuning')
    if tuning:
        measured = (f'R@1 {tuning["recall_at_1"]}, R@10 {tuning["recall_at_10"]} vs exact '
                    f'at shortlist {tuning["shortlist_k"]}')
        if shortlist_k < tuning['shortlist_k']:
            measured += f' (searching with {shortlist_k}: lower)'
        values['index_recall'] = measured
    return values
