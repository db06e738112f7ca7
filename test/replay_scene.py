"""A small generated geotagged dataset (random textures) with its map and query bag.

Places lie 15 m apart on a line; each has its own random texture. A query is a shifted, re-lit,
noisy view of a place taken a few metres away; the noise grows along the query list so that some
queries fail, and two queries lie far from every place (no positive). Everything is real: PNG
files in the folder layout, a map built by ``build_map`` with the weights-free PatchGrid
backbone, and a rosbag2 written by ``aesvc-vpr make-bag``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from aesvc_vpr.backbone.patchgrid import PatchGridBackbone
from aesvc_vpr.cli import main as cli_main
from aesvc_vpr.data.datasets import GeoImageSet, read_folder, write_folder_layout
from aesvc_vpr.retrieval.mapbuild import build_map
from aesvc_vpr.retrieval.mapdb import MapDatabase

ORIGIN = np.array([585_000.0, 4_477_000.0])   # Pittsburgh, zone 17T
SIDE = 64


@dataclass
class Scene:
    """Paths and objects of one generated scene."""

    dataset: Path
    queries: GeoImageSet
    map_root: Path
    mapdb: MapDatabase
    bag: Path


def texture(rng: np.random.Generator) -> np.ndarray:
    """Draw a (SIDE, SIDE, 3) uint8 image: coarse random structure plus fine detail."""
    coarse = rng.random((6, 6, 3)).astype(np.float32)
    image = cv2.resize(coarse, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    image += 0.25 * rng.random((SIDE, SIDE, 3)).astype(np.float32)
    return np.clip(255 * image / image.max(), 0, 255).astype(np.uint8)


def view(place: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Another look at a place: shifted by up to 3 px, re-lit, with sensor noise."""
    dx, dy = rng.integers(-3, 4, 2)
    shifted = np.roll(place, (int(dy), int(dx)), axis=(0, 1)).astype(np.float32)
    lit = shifted * rng.uniform(0.8, 1.2) + rng.normal(0, noise, place.shape)
    return np.clip(lit, 0, 255).astype(np.uint8)


def make_scene(root: Path, places: int = 30, queries: int = 24, seed: int = 0,
               image_format: str = 'raw') -> Scene:
    """Write the dataset, build its map and write its query bag under ``root``."""
    rng = np.random.default_rng(seed)
    place_images = [texture(rng) for _ in range(places)]
    place_utm = ORIGIN + np.column_stack([15.0 * np.arange(places), np.zeros(places)])
    rows = rng.choice(places, queries, replace=queries > places)
    query_images = [view(place_images[p], rng, noise=4.0 + 120.0 * i / queries)
                    for i, p in enumerate(rows)]
    query_utm = place_utm[rows] + rng.uniform(-5, 5, (queries, 2))
    query_utm[-2:] += [0.0, 500.0]                                # no place within 25 m
    database = GeoImageSet(tuple(f'p{i}' for i in range(places)), place_utm, '17T',
                           yaw=np.zeros(places))
    query_set = GeoImageSet(tuple(f'q{i}' for i in range(queries)), query_utm, '17T',
                            yaw=rng.uniform(-np.pi, np.pi, queries))
    dataset = root / 'dataset'
    write_folder_layout(dataset, database, query_set, place_images, query_images)
    loaded = read_folder(dataset)
    map_root = root / 'map'
    mapdb = build_map(loaded.database, map_root, PatchGridBackbone(), progress=False)
    bag = root / 'queries_bag'
    code = cli_main(['make-bag', '--dataset', str(dataset), '--out', str(bag),
                     '--image-format', image_format])
    assert code == 0
    return Scene(dataset, loaded.queries, map_root, mapdb, bag)
