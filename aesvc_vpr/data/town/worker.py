"""Render jobs, in this process or in a pool: render, degrade, JPEG-encode and write one image.

Kept apart from ``generate`` so that worker processes import only numpy, OpenCV and the
renderer (not scipy, rosbags or the dataset writers), which keeps their start-up short.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
import multiprocessing
import os

import cv2
import numpy as np

from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.data.town.appearance import apply_condition, Condition
from aesvc_vpr.data.town.layout import build_town, Town, TownSpec
from aesvc_vpr.data.town.render import Camera, render
from aesvc_vpr.errors import DatasetError

JPEG_QUALITY = 92
VISIBLE_FRACTION = 0.005        # a facade is 'visible' if it covers this much of the image


@dataclass(frozen=True)
class RenderJob:
    """One image to make: the pose (town frame), its condition and where the JPEG goes."""

    split: int              # 0 database, 1 queries: part of the image's random stream
    index: int
    x_m: float
    y_m: float
    yaw_rad: float
    condition: Condition
    path: str


@dataclass(frozen=True)
class RenderResult:
    """What the image shows: facade ids covering >= VISIBLE_FRACTION, most pixels first."""

    facades: tuple[int, ...]
    occluded: bool


_TOWN: Town | None = None       # this process's town, built once
_CAMERA = Camera()


def render_jobs(spec: TownSpec, camera: Camera, jobs: list[RenderJob], workers: int,
                town: Town | None = None) -> list[RenderResult]:
    """Make every job's image, in order; ``town`` (with textures) saves a rebuild if workers=1.

    Each image draws from its own random stream (seed, split, index), so results do not depend
    on ``workers``.
    """
    bar = {'total': len(jobs), 'desc': 'rendering town', 'unit': 'img', 'leave': False}
    if workers == 1:
        _init_worker(spec, camera, town, pooled=False)
        return [run_job(job) for job in progress_bar(jobs, **bar)]
    # forkserver/spawn stay safe when the caller runs threads (torch, DDS); every worker
    # builds its own copy of the town from the spec
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context('forkserver' if 'forkserver' in methods else 'spawn')
    if 'forkserver' in methods:
        ctx.set_forkserver_preload([__name__])
    try:
        # an executor (unlike multiprocessing.Pool) fails instead of hanging if a worker dies
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(spec, camera)) as pool:
            return list(progress_bar(pool.map(run_job, jobs, chunksize=8), **bar))
    except BrokenProcessPool as err:
        raise DatasetError(
            f'town render workers died ({err}); a script that calls make_town with workers > 1 '
            "must be a file with an `if __name__ == '__main__':` guard, or use workers=1"
        ) from err


def run_job(job: RenderJob) -> RenderResult:
    """Render, degrade, encode and write one image (atomically)."""
    assert _TOWN is not None, 'render worker used before _init_worker'
    frame = render(_TOWN, job.x_m, job.y_m, job.yaw_rad, _CAMERA, job.condition.sun_azimuth_rad)
    rng = np.random.default_rng([_TOWN.spec.seed, 2, job.split, job.index])
    image, occluded = apply_condition(frame, job.condition, rng)
    ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DatasetError(f'{job.path}: OpenCV could not encode the image as JPEG')
    # temp file + rename: readers never see half an image. No fsync per image (it cost ~4 ms
    # each here): a crashed run is simply re-run, and truth.json is written last.
    folder, name = os.path.split(job.path)
    tmp = os.path.join(folder, f'.{name}.{os.getpid()}.tmp')
    with open(tmp, 'wb') as f:
        f.write(jpeg.tobytes())
    os.replace(tmp, job.path)
    return RenderResult(tuple(int(i) for i in frame.visible(VISIBLE_FRACTION)), occluded)


def _init_worker(spec: TownSpec, camera: Camera, town: Town | None = None,
                 pooled: bool = True) -> None:
    global _TOWN, _CAMERA
    if pooled:
        cv2.setNumThreads(1)        # the pool already uses every core it was given
    if town is None or not town.atlas or town.spec != spec:
        town = build_town(spec)
    _TOWN, _CAMERA = town, camera
