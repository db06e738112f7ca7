r"""Where the node's per-frame compute goes, against the backbone alone, in one process and run.

The node's compute for one frame (``compute_p50_ms`` in /diagnostics) is: decode the message
(``message_to_rgb``), resize and normalise (``preprocess``), the backbone network, head and
prefix search (``Localizer.search``), and building the output messages. This times each stage
on a 640x480 rgb8 sensor_msgs/Image in interleaved rounds (so load on a shared machine hits all
stages alike) and prints one JSON line per runtime with the median of each stage and the ratio
node / backbone network. No DDS, no executor: the ROS transport is bench_node.py's business.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_node_compute.py --runtimes torch-fp32 \\
        openvino-int8 --rounds 40 --map-size 10000
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import tempfile
import time

from builtin_interfaces.msg import Time
import numpy as np
from sensor_msgs.msg import Image

from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.dinov2_archs import MODELS
from aesvc_vpr.backbone.weights import random_weights
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import BackboneConfig, MatchConfig, SearchConfig
from aesvc_vpr.data.town.views import town_calibration
from aesvc_vpr.images.messages import message_to_rgb
from aesvc_vpr.retrieval.encoder import Encoder
from aesvc_vpr.retrieval.localizer import Localization, Localizer
from aesvc_vpr.retrieval.mapdb import MapDatabase
from aesvc_vpr.ros import messages
from aesvc_vpr.ros.frames import MapFrame
from aesvc_vpr.ros.node import share_cores
from aesvc_vpr.ros.params import FrameConfig

STAGES = ('decode', 'preprocess', 'backbone', 'search', 'messages')


def camera_frame(width: int, height: int, seed: int) -> Image:
    """Return a 640x480 rgb8 frame of smooth noise, as a camera driver publishes it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), np.uint8)
    rgb = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    msg = Image(height=height, width=width, encoding='rgb8', step=width * 3,
                data=rgb.tobytes())
    msg.header.stamp = Time(sec=1, nanosec=0)
    return msg


def output_messages(loc: Localization, stamp: Time, scale_m: float,
                    frame: MapFrame | None = None) -> None:
    """Build every message the node publishes for one frame (what Outputs.publish builds)."""
    if frame is not None:
        loc = frame.localization(loc)     # UTM -> the local map frame, as the node does
    messages.place_match_msg(loc, stamp, 'map', 25.0)
    messages.candidates_msgs(loc, stamp, 'map')
    messages.match_markers(loc, stamp, 'map', scale_m)
    messages.ranked_candidates_msg(loc, stamp, 'map')


def stage_times(localizer: Localizer, msg: Image, scale_m: float,
                frame: MapFrame | None = None) -> dict[str, float]:
    """Run one frame through the node's stages; seconds per stage."""
    backbone = localizer.backbone
    clock = [time.perf_counter()]

    def lap() -> float:
        now = time.perf_counter()
        elapsed, clock[0] = now - clock[0], now
        return elapsed

    out = {}
    rgb = message_to_rgb(msg)
    out['decode'] = lap()
    pixels = backbone.preprocess([rgb])
    out['preprocess'] = lap()
    raw = backbone.runner(pixels)
    out['backbone'] = lap()
    loc = localizer.search(localizer.encoder.project(raw), [1_000_000_000])[0]
    out['search'] = lap()
    output_messages(loc, msg.header.stamp, scale_m, frame)
    out['messages'] = lap()
    return out


def bench(runtime: str, args: argparse.Namespace, root: Path) -> dict:
    """Time the stages for one runtime; return the JSON line."""
    cfg = BackboneConfig(model_name=args.model, input_size=args.input_size, runtime=runtime)
    backbone = DinoV2Backbone(cfg, random_weights(MODELS[args.model], args.seed),
                              town_calibration())
    rng = np.random.default_rng(args.seed)
    mapdb = MapDatabase.write(
        root / runtime, rng.standard_normal((args.map_size, backbone.dim)).astype(np.float32),
        rng.uniform(0, 5000, (args.map_size, 2)) + [500_000.0, 4_000_000.0], '17T',
        backbone_name=backbone.name, backbone_fingerprint=backbone.fingerprint)
    localizer = Localizer(Encoder(backbone), mapdb, SearchConfig(prefix_dim=args.prefix_dim),
                          MatchConfig(top_k=args.top_k))
    msg = camera_frame(args.width, args.height, args.seed)
    scale_m = messages.marker_scale_m(mapdb.utm)
    frame = MapFrame(FrameConfig(), 'map', mapdb.origin_utm)
    for _ in range(args.warmup):
        stage_times(localizer, msg, scale_m, frame)
    samples = {stage: [] for stage in STAGES}
    for _ in range(args.rounds):
        for stage, seconds in stage_times(localizer, msg, scale_m, frame).items():
            samples[stage].append(seconds * 1e3)
    medians = {stage: round(float(np.median(v)), 2) for stage, v in samples.items()}
    totals = np.sum([samples[s] for s in STAGES], axis=0)
    backbone_ms = np.asarray(samples['backbone'])
    return {'bench': 'node_compute', 'runtime': runtime, 'model': args.model,
            'input_size': args.input_size, 'frame': f'{args.width}x{args.height} rgb8',
            'map_size': args.map_size, 'prefix_dim': args.prefix_dim, 'top_k': args.top_k,
            **{f'{stage}_ms_p50': medians[stage] for stage in STAGES},
            'node_compute_ms_p50': round(float(np.median(totals)), 2),
            'node_over_backbone': round(float(np.median(totals) / np.median(backbone_ms)), 3),
            'rounds': args.rounds, 'threads': int(os.environ.get('OMP_NUM_THREADS', 0)) or None,
            'load_avg_1m': round(os.getloadavg()[0], 2), **provenance()}


def main() -> None:
    """Parse flags and print one JSON line per runtime."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runtimes', nargs='+', default=['torch-fp32'])
    parser.add_argument('--model', default='vit_small_patch14_dinov2', choices=list(MODELS))
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--map-size', type=int, default=10_000)
    parser.add_argument('--prefix-dim', type=int, default=64)
    parser.add_argument('--top-k', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=40)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    share_cores(1)            # the node's thread policy for one worker (OpenCV on one thread)
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in args.runtimes:
            print(json.dumps(bench(runtime, args, Path(tmp))), flush=True)


if __name__ == '__main__':
    main()
