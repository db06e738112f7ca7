r"""DINOv2 backbone speed per runtime mode, against torch fp32 eager measured in the same run.

For each (model, input size, batch) the torch-fp32 baseline and every requested runtime are timed
in interleaved rounds (A B C A B C ...), so a busy shared machine slows all of them alike. In a
round each runtime first makes one untimed call: the previous runtime's worker threads spin on
for a while after it returns (torch's OpenMP pool, ONNX Runtime's pool), and would otherwise
steal a core from the first timed call; a node runs one runtime, so it never pays that. Only
the network is timed (pre-processed pixels in, descriptors out); resize and normalisation are
excluded. One JSON line per (model, size, batch, runtime) with ms/image median and p95, the
baseline's, the speed-up, and the cosine of each mode's descriptors to fp32 ones (mean/min) on
real images from ../shared/data.

Real DINOv2 weights are not available on the benchmark machine: the weights are timm's random
initialisation (layer scales set to 1 so that every block contributes). Speed is what the real
model would give; the cosines show a runtime's numeric error on real images, but a trained
model's activations differ, so they are a proxy for the real-weights figure.

    .venv/bin/python benchmarks/bench_backbone.py --models vit_small_patch14_dinov2 \\
        --sizes 224 --batches 1 8 --rounds 10

With ``--onnx MODEL.onnx`` it times that ONNX image embedder instead (batch 1, network only,
each of --onnx-runtimes) next to the first --models entry at the first --sizes in torch-fp32,
interleaved in the same rounds, and prints the ViT's time over the ONNX model's as a ratio:

    M=../shared/data/mobilenet_coral/_DERIVED_onnx
    .venv/bin/python benchmarks/bench_backbone.py --sizes 224 --rounds 10 \\
        --onnx $M/mobilenet_v1_1.0_224_quant_embedding_extractor.onnx --onnx-preset mobilenet-tf

``--busy N`` starts N processes that each spin one core for the whole run, as the rest of a
robot's software does: torch's OpenMP threads spin and wait for each other when a core is taken,
so a runtime's speed on an idle machine does not tell how it holds up beside other work.
``--busy`` and ``--threads`` take several values: each (busy, threads) column then runs in turn
in the same process, so idle and busy figures come from one run:

    .venv/bin/python benchmarks/bench_backbone.py --models vit_small_patch14_dinov2 --sizes 224 \
        --batches 1 --runtimes torch-fp32 onnx-fp32 onnx-int8 --busy 0 1 --threads 2 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
from pathlib import Path
import platform
import time

import cv2
import numpy as np
import torch

from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.dinov2_archs import MODELS
from aesvc_vpr.backbone.weights import random_weights
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import BackboneConfig, DESCRIPTORS, OnnxConfig, RUNTIMES
from aesvc_vpr.data.town.views import town_calibration

REPO = Path(__file__).resolve().parents[1]
IMAGE_SETS = ('gardenspoint_mini10', 'vprbench_corridor')
WEIGHTS_NOTE = 'random-init (real DINOv2 weights unavailable on this machine)'


def real_images(data: Path, per_set: int) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``per_set`` RGB images from each real image set (sorted file order)."""
    images, used = [], []
    for name in IMAGE_SETS:
        files = sorted((data / name).rglob('*.jpg'))[:per_set]
        images += [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
        used += [f'{name}:{len(files)}'] if files else []
    if not images:
        raise SystemExit(f'no images under {data}/{{{",".join(IMAGE_SETS)}}}; set --data')
    return images, used


def time_rounds(runners: dict, pixels: np.ndarray, rounds: int, warmup: int,
                calls: int) -> dict:
    """Time each runner in interleaved rounds: {runtime: [ms per image, one per timed call]}."""
    for _ in range(warmup):
        for run in runners.values():
            run(pixels)
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            run(pixels)    # settle: let the previous runtime's spinning threads go idle
            for _ in range(calls):
                start = time.perf_counter()
                run(pixels)
                samples[name].append((time.perf_counter() - start) * 1e3 / len(pixels))
    return samples


def spin() -> None:
    """Keep one core busy until terminated (a competing process for ``--busy``)."""
    while True:
        pass


def start_busy(count: int) -> list[multiprocessing.Process]:
    """Start ``count`` spinning processes; the caller terminates them."""
    procs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    return procs


def model_gflops(model: str, size: int) -> float:
    """Multiply-adds x 2 of one forward pass: patch embedding, blocks (linear + attention)."""
    arch = MODELS[model]
    grid = size // arch.patch_size
    tokens = 1 + arch.reg_tokens + grid * grid
    dim, hidden = arch.embed_dim, arch.mlp_hidden
    fc2_in = hidden // 2 if arch.swiglu else hidden
    linear = tokens * dim * (3 * dim + dim + hidden) + tokens * fc2_in * dim
    attention = 2 * tokens * tokens * dim           # q k^T and attn v over all heads
    patch = grid * grid * 3 * arch.patch_size ** 2 * dim
    return 2 * (arch.depth * (linear + attention) + patch) / 1e9


def matmul_gflops_per_s(seconds: float = 2.0, n: int = 512) -> float:
    """Best fp32 GEMM rate of torch on this CPU (n^3, best of repeated calls: least contended)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best, end = float('inf'), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (N, D) arrays."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def bench_config(model: str, size: int, args: argparse.Namespace, images: list[np.ndarray],
                 context: dict) -> None:
    """Print the lines of one (model, size) for every batch size."""
    weights = random_weights(MODELS[model], seed=args.seed)
    backbones = {runtime: DinoV2Backbone(BackboneConfig(
        model_name=model, input_size=size, runtime=runtime, descriptor=args.descriptor,
        batch_size=max(args.batches), calibration_images=args.calibration_images), weights,
        town_calibration())
        for runtime in dict.fromkeys(['torch-fp32', *args.runtimes])}
    pixels = backbones['torch-fp32'].preprocess(images)
    embeddings = {name: bb.runner(pixels) for name, bb in backbones.items()}
    fp32 = embeddings['torch-fp32']
    units = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    # how alike the images' descriptors are: near 1 would make any cosine check meaningless
    spread = (units @ units.T)[np.triu_indices(len(units), 1)]
    gflops = model_gflops(model, size)
    for batch in args.batches:
        batch_pixels = np.ascontiguousarray(pixels[np.arange(batch) % len(pixels)])
        samples = time_rounds({n: bb.runner for n, bb in backbones.items()}, batch_pixels,
                              args.rounds, args.warmup, args.calls)
        base = np.asarray(samples['torch-fp32'])
        for runtime, times in samples.items():
            times = np.asarray(times)
            line = {
                'bench': 'backbone', 'model': model, 'input_size': size, 'batch': batch,
                'runtime': runtime, 'descriptor': args.descriptor,
                'ms_per_image_median': round(float(np.median(times)), 2),
                'ms_per_image_p95': round(float(np.percentile(times, 95)), 2),
                'baseline': 'torch-fp32 eager',
                'baseline_ms_per_image_median': round(float(np.median(base)), 2),
                'baseline_ms_per_image_p95': round(float(np.percentile(base, 95)), 2),
                'speedup_vs_baseline': round(float(np.median(base) / np.median(times)), 2),
                'rounds': args.rounds, 'calls_per_round': args.calls, 'weights': WEIGHTS_NOTE,
                'model_gflops': round(gflops, 2),
                'fp32_floor_ms_per_image': round(gflops / context['matmul_gflops_per_s'] * 1e3,
                                                 1)}
            if runtime != 'torch-fp32':
                cos = cosines(embeddings[runtime], fp32)
                line.update(cos_vs_fp32_mean=round(float(cos.mean()), 5),
                            cos_vs_fp32_min=round(float(cos.min()), 5))
            line.update(cos_images=context['images'],
                        calibration_images=args.calibration_images or 'town views',
                        fp32_pairwise_cos_mean=round(float(spread.mean()), 3),
                        load_avg_1m=round(os.getloadavg()[0], 2), **context['run'])
            print(json.dumps(line), flush=True)


def bench_onnx(args: argparse.Namespace, images: list[np.ndarray], context: dict) -> None:
    """Print one line per ONNX runtime: its ms/image at batch 1 against the ViT's."""
    from aesvc_vpr.backbone.onnx_backbone import OnnxBackbone
    model, size = args.models[0], args.sizes[0]
    vit = DinoV2Backbone(BackboneConfig(model_name=model, input_size=size, batch_size=1),
                         random_weights(MODELS[model], seed=args.seed))
    onnx_cfg = OnnxConfig(preset=args.onnx_preset)
    onnx = {runtime: OnnxBackbone(BackboneConfig(model_name='onnx', weights=str(args.onnx),
                                                 runtime=runtime, onnx=onnx_cfg), args.onnx)
            for runtime in args.onnx_runtimes}
    first = next(iter(onnx.values()))
    vit_pixels, onnx_pixels = vit.preprocess(images[:1]), first.pixels(images[:1])
    runners = {'vit': lambda _: vit.runner(vit_pixels),
               **{name: (lambda _, bb=bb: bb.runner(onnx_pixels)) for name, bb in onnx.items()}}
    samples = time_rounds(runners, vit_pixels, args.rounds, args.warmup, args.calls)
    base = np.asarray(samples.pop('vit'))
    for runtime, times in samples.items():
        times = np.asarray(times)
        print(json.dumps({
            'bench': 'backbone_onnx', 'model': str(args.onnx.name), 'runtime': runtime,
            'preset': args.onnx_preset, 'dim': first.dim, 'batch': 1,
            'quantised_model': first.model.quantised,
            'ms_per_image_median': round(float(np.median(times)), 2),
            'ms_per_image_p95': round(float(np.percentile(times, 95)), 2),
            'baseline': f'{model} {size}px torch-fp32 ({WEIGHTS_NOTE})',
            'baseline_ms_per_image_median': round(float(np.median(base)), 2),
            'baseline_ms_per_image_p95': round(float(np.percentile(base, 95)), 2),
            'baseline_over_onnx': round(float(np.median(base) / np.median(times)), 2),
            'rounds': args.rounds, 'calls_per_round': args.calls,
            'load_avg_1m': round(os.getloadavg()[0], 2), **context['run']}), flush=True)


def main() -> None:
    """Parse flags, then print one JSON line per (model, size, batch, runtime)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', choices=list(MODELS),
                        default=['vit_small_patch14_dinov2', 'vit_base_patch14_dinov2'])
    parser.add_argument('--sizes', type=int, nargs='+', default=[224, 322])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument('--descriptor', default='cls', choices=DESCRIPTORS)
    parser.add_argument('--calibration-images', default='',
                        help="openvino-int8's calibration folder ('' renders town views)")
    parser.add_argument('--rounds', type=int, default=20, help='timed rounds per runtime')
    parser.add_argument('--calls', type=int, default=3,
                        help='timed calls per runtime and round, after one untimed call')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, nargs='+', default=[os.cpu_count() or 1])
    parser.add_argument('--per-set', type=int, default=20, help='real images per image set')
    parser.add_argument('--data', type=Path, default=Path(
        os.environ.get('AESVC_VPR_DATA', REPO.parent / 'shared' / 'data')))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--onnx', type=Path, default=None,
                        help='time this ONNX image embedder against the first --models entry')
    parser.add_argument('--onnx-preset', default='imagenet',
                        help='its value scaling (backbone.onnx.preset)')
    parser.add_argument('--onnx-runtimes', nargs='+', default=['onnx-fp32', 'openvino-fp32'],
                        choices=[r for r in RUNTIMES if not r.startswith('torch')])
    parser.add_argument('--busy', type=int, nargs='+', default=[0],
                        help='competing processes, each spinning one core, during the timing; '
                             'several values run one column each')
    args = parser.parse_args()
    images, used = real_images(args.data, args.per_set)
    for busy_count in args.busy:
        for threads in args.threads:
            column = argparse.Namespace(**{**vars(args), 'busy': busy_count,
                                           'threads': threads})
            bench_column(column, images, used)


def bench_column(args: argparse.Namespace, images: list[np.ndarray], used: list[str]) -> None:
    """Time every (model, size) with ``args.threads`` threads beside ``args.busy`` spinners."""
    torch.set_num_threads(args.threads)
    rate = matmul_gflops_per_s()   # at the thread count set above, before --busy starts
    context = {'images': used, 'matmul_gflops_per_s': rate, 'run': {
        'threads': args.threads, 'busy_processes': args.busy,
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', ''),
        'cpu': platform.processor() or platform.machine(),
        'matmul_gflops_per_s': round(rate, 1),
        'cpu_count': os.cpu_count(), 'date': datetime.date.today().isoformat(), **provenance()}}
    busy = start_busy(args.busy)
    try:
        if args.onnx is not None:
            bench_onnx(args, images, context)
            return
        for model in args.models:
            for size in args.sizes:
                bench_config(model, size, args, images, context)
    finally:
        for proc in busy:
            proc.terminate()


if __name__ == '__main__':
    main()
