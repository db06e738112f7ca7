"""Generate a geotagged synthetic town dataset: images, folder layout, dbStruct, query bag, truth.

The survey (database) and the query run are rendered separately from their own poses, so no
image is shared between them; the query run has the appearance changes, lane changes and heading
jitter of ``aesvc_vpr.town.appearance``. Rendering and JPEG encoding run in worker processes;
each image draws from its own seeded random stream, so the output does not depend on the number
of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import shutil
import time

import numpy as np

from aesvc_vpr.bags.writer import BagLayout, write_query_bag
from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.data.bag_frames import frames_from_set
from aesvc_vpr.data.datasets import GeoImageSet, utm_filename, write_dbstruct
from aesvc_vpr.data.town import appearance, routes
from aesvc_vpr.data.town.layout import blocks_for_length, build_town, Town, TownSpec
from aesvc_vpr.data.town.render import Camera
from aesvc_vpr.data.town.worker import render_jobs, RenderJob, RenderResult, VISIBLE_FRACTION
from aesvc_vpr.errors import DatasetError

log = logging.getLogger(__name__)

SURVEY_SPACING_M = 5.0          # target distance between database images
QUERY_SPACING_M = 5.0           # distance between query frames, about (10 m/s at RATE_HZ)
RATE_HZ = 2.0                   # query frame rate: stamps are 1 / RATE_HZ apart
QUERY_T0_NS = 1_700_000_000 * 10**9             # query run start (deterministic)
SURVEY_T0_NS = QUERY_T0_NS - 30 * 86_400 * 10**9  # the survey was a month earlier
OUTPUTS = ('database', 'queries', 'town.mat', 'query_bag', 'truth.json')
BAG_TOPICS = {'image_topic': '/camera/image_raw', 'pose_topic': '/odom'}


@dataclass(frozen=True)
class TownDataset:
    """Where make_town put everything, and the two image sets (paths, UTM, yaw, stamps)."""

    root: Path
    database: GeoImageSet
    queries: GeoImageSet
    mat_path: Path
    bag_path: Path
    truth_path: Path
    seconds: float


def make_town(out_dir: str | os.PathLike, n_db: int = 1000, n_query: int = 300, size: int = 224,
              difficulty: float = 0.5, seed: int = 0,
              origin_utm: tuple[float, float] = (584500.0, 4476900.0), zone: str = '17T',
              workers: int = 2, bag_format: str = 'mcap', bag_images: str = 'raw',
              overwrite: bool = False) -> TownDataset:
    """Render a town's survey and query run and write every output format.

    Args:
        out_dir: output folder; gets database/, queries/, town.mat, query_bag/ and truth.json.
        n_db: database images (an Euler circuit over both directions of every street; the town
            grows with ``n_db`` so that they are about 5 m apart).
        n_query: query images, about 5 m (0.5 s) apart.
        size: square image side in pixels.
        difficulty: appearance and pose change of the query run, 0 (none) .. 1 (hard) .. 2.
        seed: everything is a function of the seed (and the arguments).
        origin_utm: UTM easting, northing (m) of the town centre.
        zone: UTM zone of ``origin_utm``, e.g. '17T' (Pittsburgh).
        workers: rendering processes.
        bag_format: rosbag2 storage, 'mcap' or 'sqlite3'.
        bag_images: 'raw' (sensor_msgs/Image rgb8) or 'jpeg' (CompressedImage).
        overwrite: replace the outputs of an earlier run in ``out_dir``.

    Returns:
        The dataset description.

    Raises:
        DatasetError: an argument out of range, or outputs in ``out_dir`` without ``overwrite``.
        DatasetError, BagError: an output could not be written.
    """
    started = time.perf_counter()
    difficulty = appearance.check_difficulty(difficulty)
    if n_db < 10 or n_query < 1 or size < 32 or workers < 1:
        raise DatasetError(f'make_town needs n_db >= 10, n_query >= 1, size >= 32, workers >= 1; '
                           f'got {n_db}, {n_query}, {size}, {workers}')
    bag_layout = BagLayout(storage=bag_format, image_format=bag_images, **BAG_TOPICS)
    root = _prepare(Path(out_dir), overwrite)
    spec = TownSpec(seed=seed, blocks=blocks_for_length(n_db * SURVEY_SPACING_M / 2))
    town = build_town(spec, textures=workers == 1)
    rng = np.random.default_rng([seed, 1])
    circuit = routes.survey_route(town, rng)
    survey_m = routes.route_length_m(town, circuit)
    survey = routes.sample_route(town, circuit, n_db, survey_m / n_db)
    # the query walk is at least n_query * 5 m and ends by re-driving its start (the loop);
    # frames are spread evenly over all of it so the loop closure is always in the run
    walk = routes.query_route(town, rng, n_query * QUERY_SPACING_M,
                              min(200.0, 0.2 * n_query * QUERY_SPACING_M))
    query_m = routes.route_length_m(town, walk)
    query = appearance.perturb_query(routes.sample_route(town, walk, n_query, query_m / n_query),
                                     difficulty, rng)
    conditions = appearance.query_conditions(n_query, difficulty, rng)
    origin = np.asarray(origin_utm, np.float64)
    period_ns = int(round(1e9 / RATE_HZ))
    sets, jobs = [], []
    for split, (name, poses, conds, t0) in enumerate((
            ('database', survey, [appearance.SURVEY] * n_db, SURVEY_T0_NS),
            ('queries', query, conditions, QUERY_T0_NS))):
        utm_xy = origin + poses.xy_m
        notes = [f'town{seed}-{name}-{i:05d}' for i in range(len(poses))]
        paths = [str(root / name / utm_filename(e, n, zone, float(y), note))
                 for (e, n), y, note in zip(utm_xy, poses.yaw_rad, notes)]
        sets.append(GeoImageSet(tuple(paths), utm_xy, zone, poses.yaw_rad,
                                t0 + period_ns * np.arange(len(poses), dtype=np.int64),
                                source=str(root / name)))
        jobs += [RenderJob(split, i, float(x), float(y), float(yaw), conds[i], paths[i])
                 for i, ((x, y), yaw) in enumerate(zip(poses.xy_m, poses.yaw_rad))]
    log.info('town: %dx%d blocks, %d facades; survey %.0f m (%d images), query run %.0f m '
             '(%d images), difficulty %.2f', *spec.blocks, town.n_facades, survey_m, n_db,
             query_m, n_query, difficulty)
    results = render_jobs(spec, Camera(width=size, height=size), jobs, workers,
                          town if workers == 1 else None)
    database, queries = sets
    write_dbstruct(root / 'town.mat', database, queries, image_root=root)
    # the bag replays exactly the query JPEGs on disk, with their stamps
    write_query_bag(root / 'query_bag', frames_from_set(queries), bag_layout)
    _write_truth(root / 'truth.json', spec, town, sets, results, conditions,
                 {'seed': seed, 'difficulty': difficulty, 'size': size, 'utm_zone': zone,
                  'origin_utm': list(origin_utm), 'mat': 'town.mat', 'bag': 'query_bag',
                  'bag_format': bag_format, 'bag_images': bag_images})
    seconds = time.perf_counter() - started
    log.info('town: %d database + %d query images of %dx%d written to %s in %.1f s',
             n_db, n_query, size, size, root, seconds)
    return TownDataset(root, database, queries, root / 'town.mat', root / 'query_bag',
                       root / 'truth.json', seconds)


def _prepare(root: Path, overwrite: bool) -> Path:
    """Create ``root``; remove earlier outputs only when asked (never anything else)."""
    present = [name for name in OUTPUTS if (root / name).exists()]
    if present and not overwrite:
        raise DatasetError(f'{root} already holds {", ".join(present)}; choose another --out '
                           'or pass --force to replace them')
    for name in present:
        target = root / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for split in ('database', 'queries'):
        (root / split).mkdir(parents=True, exist_ok=True)
    return root


def _write_truth(path: Path, spec: TownSpec, town: Town, sets: list[GeoImageSet],
                 results: list[RenderResult],
                 conditions: list[appearance.Condition], meta: dict) -> None:
    """truth.json: every image's pose, stamp and visible facades, plus how the town was made."""
    images: dict[str, list[dict]] = {}
    row = 0
    for name, geo in zip(('database', 'queries'), sets):
        images[name] = []
        for i in range(len(geo)):
            result = results[row]
            row += 1
            entry = {'file': os.path.relpath(geo.paths[i], path.parent),
                     'easting': round(float(geo.utm[i, 0]), 3),
                     'northing': round(float(geo.utm[i, 1]), 3),
                     'yaw_rad': round(float(geo.yaw[i]), 5), 'stamp_ns': int(geo.stamps_ns[i]),
                     'facades': list(result.facades), 'occluded': result.occluded}
            if name == 'queries':
                c = conditions[i]
                entry.update(gain=round(c.gain, 3), noise_sigma=round(c.noise_sigma, 2),
                             fog_m=round(c.fog_m, 1) if np.isfinite(c.fog_m) else None)
            images[name].append(entry)
    doc = dict(
        format='aesvc_vpr synthetic town v1',
        frames=('easting/northing: UTM metres in utm_zone; yaw_rad: ENU, counter-clockwise from '
                'east; bag /odom: the same absolute UTM pose (frame map), one per image stamp'),
        **meta, blocks=list(spec.blocks), n_facades=town.n_facades,
        street_x_m=[round(float(v), 3) for v in town.street_x_m],
        street_y_m=[round(float(v), 3) for v in town.street_y_m],
        visible_fraction=VISIBLE_FRACTION, rate_hz=RATE_HZ, **BAG_TOPICS, **images)
    with atomic_write(path, 'w') as f:
        json.dump(doc, f, indent=1)
