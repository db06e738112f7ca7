r"""Physical floors: DINOv2 FLOPs against the matmul rate, flat-scan bytes against bandwidth.

A measurement can only be judged against what the hardware allows. This prints, as JSON lines:

- ``vit_flops``: the FLOPs of one 224x224 image through timm's DINOv2 ViT-S/14 and ViT-B/14
  (random init), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the real model (as
  timm runs it with fused attention, and with attention unfused so its matmuls are seen) beside
  the analytic count (patch embed + per block qkv, q k^T, attn v, proj, MLP; 2 FLOPs per MAC).
- ``gemm``: torch fp32 matmul GFLOP/s at every matmul shape of those models and a large square,
  with 1 and 2 threads; bf16 is probed at the ViT-S MLP shape and measured everywhere only if it
  beats fp32 there.
- ``vit_latency``: the real model, torch fp32 eager, batch 1, timed right after the GEMMs at the
  same thread count; ``floor_ms`` = FLOPs / best GEMM rate, ``shape_floor_ms`` = each matmul's
  FLOPs / the rate measured at its own shape; the ratios are measured / floor.
- ``bandwidth``: numpy sum, torch sum and numpy copy of 1 GiB of float32, 1 and 2 threads.
- ``flat_scan``: bytes of an exact scan of N x d float32 and ``floor_ms`` = bytes / the fastest
  1-thread read bandwidth; FAISS IndexFlatIP batch-1 search (1 thread) is timed at
  100k x {64, 768} and the ratio measured / floor reported. 1M-entry maps (3 GB at 768-d) are
  timed only with ``--with-1m``.

Rates and times are medians (best-of also given), and each line carries the load average. On a
shared machine a long call is stretched by other jobs more than a short GEMM is, so every timing
also has a CPU-time twin (process CPU time per call, all threads): ``cpu_over_cpu_floor`` is
CPU time spent over CPU time needed at the best rate per CPU second, and holds up under load.

    .venv/bin/python benchmarks/bench_floors.py
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import datetime
import itertools
import json
import os
from pathlib import Path
import time
from typing import Callable

import faiss
import numpy as np
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from aesvc_vpr.common.provenance import provenance

MODELS = ('vit_small_patch14_dinov2', 'vit_base_patch14_dinov2')
FLOAT32_BYTES = 4
GIB = 1 << 30


@dataclass(frozen=True)
class Matmul:
    """One kind of matmul in a ViT: ``count`` times per image, (batch, m, k) @ (batch, k, n)."""

    layer: str
    count: int
    batch: int
    m: int
    k: int
    n: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(batch, m, k, n), the key of a GEMM measurement."""
        return self.batch, self.m, self.k, self.n

    @property
    def flops(self) -> int:
        """Count the FLOPs per image, 2 per multiply-add."""
        return 2 * self.count * self.batch * self.m * self.k * self.n


def vit_matmuls(model: torch.nn.Module) -> list[Matmul]:
    """Every matmul of a timm ViT forward pass, from the model's own shape attributes."""
    dim, heads = model.embed_dim, model.blocks[0].attn.num_heads
    depth, hidden = len(model.blocks), model.blocks[0].mlp.fc1.out_features
    patch = model.patch_embed.patch_size[0]
    patches = model.patch_embed.grid_size[0] * model.patch_embed.grid_size[1]
    tokens = patches + model.num_prefix_tokens
    return [Matmul('patch_embed', 1, 1, patches, 3 * patch * patch, dim),
            Matmul('qkv', depth, 1, tokens, dim, 3 * dim),
            Matmul('attn_scores', depth, heads, tokens, dim // heads, tokens),
            Matmul('attn_values', depth, heads, tokens, tokens, dim // heads),
            Matmul('attn_proj', depth, 1, tokens, dim, dim),
            Matmul('mlp_fc1', depth, 1, tokens, dim, hidden),
            Matmul('mlp_fc2', depth, 1, tokens, hidden, dim)]


def counted_flops(model: torch.nn.Module, pixels: torch.Tensor, fused: bool) -> int:
    """Count one forward pass with FlopCounterMode, timm's fused attention on or off."""
    for block in model.blocks:
        block.attn.fused_attn = fused
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixels)
    for block in model.blocks:
        block.attn.fused_attn = True                 # timm's default, as timed
    return int(counter.get_total_flops())


def flops_line(name: str, args: argparse.Namespace,
               context: dict) -> tuple[torch.nn.Module, list[Matmul]]:
    """Build a timm model, print its counted and analytic FLOPs, return it and its matmuls."""
    model = timm.create_model(name, pretrained=False, img_size=args.img_size,
                              num_classes=0).eval()
    matmuls = vit_matmuls(model)
    pixels = torch.randn(1, 3, args.img_size, args.img_size,
                         generator=torch.Generator().manual_seed(args.seed))
    fused, unfused = counted_flops(model, pixels, True), counted_flops(model, pixels, False)
    analytic = sum(mm.flops for mm in matmuls)
    emit('vit_flops', context, model=name, img_size=args.img_size, batch=1,
         counted_fused_attention=fused, counted_unfused_attention=unfused, analytic=analytic,
         counted_unfused_over_analytic=round(unfused / analytic, 4),
         analytic_by_layer={mm.layer: mm.flops for mm in matmuls},
         note='matmul/conv FLOPs only; layernorm, GELU, softmax, adds not counted')
    return model, matmuls


def sample_s(fn: Callable[[], object], warmup: int, min_runs: int, min_s: float = 0.0,
             max_runs: int = 1000) -> np.ndarray:
    """Time calls: at least ``min_runs`` of them and ``min_s`` seconds, after a warm-up.

    Returns:
        (runs, 2) float64 seconds per call: wall clock, and CPU time of the whole process (all
        threads). On a shared machine CPU time leaves out the time other jobs held the cores.
    """
    for _ in range(warmup):
        fn()
    times: list[tuple[float, float]] = []
    begin = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - begin < min_s and len(times) < max_runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start, time.process_time() - start_cpu))
    return np.asarray(times)


def stats_ms(times_s: np.ndarray) -> dict[str, float]:
    """Wall-clock median and p95, median CPU time (ms), and the number of runs."""
    p50, p95 = np.percentile(times_s[:, 0] * 1e3, [50, 95])
    return {'median_ms': round(float(p50), 3), 'p95_ms': round(float(p95), 3),
            'cpu_median_ms': round(float(np.median(times_s[:, 1])) * 1e3, 3),
            'runs': len(times_s)}


def rates(amount: float, times_s: np.ndarray) -> tuple[float, float]:
    """``amount`` per wall second and per CPU second, both from the median call."""
    wall_s, cpu_s = np.median(times_s, axis=0)
    return amount / float(wall_s), amount / max(float(cpu_s), 1e-9)


def cpu_name() -> str:
    """Read the CPU model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        return 'unknown'
    return next((ln.split(':', 1)[1].strip() for ln in lines if ln.startswith('model name')),
                'unknown')


def emit(kind: str, context: dict, **fields: object) -> None:
    """Print one JSON line with the run context and the load average at this moment."""
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({'bench': 'floors', 'kind': kind, **fields, 'load_avg_1_5_15m': load,
                      **context}), flush=True)


def gemm_rate(shape: tuple[int, int, int, int], dtype: torch.dtype, args: argparse.Namespace,
              context: dict) -> tuple[float, float]:
    """Time one (batch, m, k) @ (batch, k, n) matmul shape and print it.

    Returns:
        GFLOP per wall second and per CPU second, from the median call.
    """
    batch, m, k, n = shape
    gen = torch.Generator().manual_seed(args.seed)
    a = torch.randn(batch, m, k, generator=gen).to(dtype).squeeze(0)
    b = torch.randn(batch, k, n, generator=gen).to(dtype).squeeze(0)
    with torch.inference_mode():
        times = sample_s(lambda: torch.matmul(a, b), 1, args.gemm_min_runs, args.gemm_min_s)
    wall, cpu = rates(2 * batch * m * k * n / 1e9, times)
    emit('gemm', context, dtype=str(dtype).replace('torch.', ''), shape_bmkn=list(shape),
         threads=torch.get_num_threads(), **stats_ms(times), gflops=round(wall, 2),
         gflops_best=round(2 * batch * m * k * n / 1e9 / float(times[:, 0].min()), 2),
         gflops_per_cpu_s=round(cpu, 2))
    return wall, cpu


def compute_floors(models: dict[str, torch.nn.Module], flops: dict[str, list[Matmul]],
                   args: argparse.Namespace, context: dict) -> None:
    """Per thread count: GEMM rates at every shape, then each model's latency against them."""
    shapes = sorted({mm.shape for name in models for mm in flops[name]}
                    | {(1, s, s, s) for s in args.squares})
    probe = next(mm.shape for mm in flops[next(iter(models))] if mm.layer == 'mlp_fc1')
    pixels = torch.randn(1, 3, args.img_size, args.img_size,
                         generator=torch.Generator().manual_seed(args.seed))
    for threads in args.threads:
        torch.set_num_threads(threads)
        fp32 = {shape: gemm_rate(shape, torch.float32, args, context) for shape in shapes}
        bf16_probe = gemm_rate(probe, torch.bfloat16, args, context)[0]
        bf16 = ({s: gemm_rate(s, torch.bfloat16, args, context)[0] for s in shapes}
                if bf16_probe > fp32[probe][0] else {})
        best, best_cpu = (max(rate[i] for rate in fp32.values()) for i in (0, 1))
        for name, model in models.items():
            with torch.inference_mode():
                times = sample_s(lambda: model(pixels), 2, args.runs)
            total = sum(mm.flops for mm in flops[name])
            floor_ms, cpu_floor_ms = total / best / 1e6, total / best_cpu / 1e6
            shape_floor_ms = sum(mm.flops / fp32[mm.shape][0] for mm in flops[name]) / 1e6
            stats = stats_ms(times)
            extra = ({'bf16_floor_ms': round(total / max(bf16.values()) / 1e6, 2)} if bf16
                     else {'bf16_note': f'bf16 GEMM {bf16_probe:.2f} GFLOP/s at {list(probe)} '
                                        f'vs fp32 {fp32[probe][0]:.2f}: slower, not used'})
            emit('vit_latency', context, model=name, img_size=args.img_size, batch=1,
                 runtime='torch fp32 eager', threads=threads, **stats, flops=total,
                 best_gemm_gflops=round(best, 2), floor_ms=round(floor_ms, 2),
                 shape_floor_ms=round(shape_floor_ms, 2),
                 measured_over_floor=round(stats['median_ms'] / floor_ms, 2),
                 measured_over_shape_floor=round(stats['median_ms'] / shape_floor_ms, 2),
                 best_gemm_gflops_per_cpu_s=round(best_cpu, 2),
                 cpu_floor_ms=round(cpu_floor_ms, 2),
                 cpu_over_cpu_floor=round(stats['cpu_median_ms'] / cpu_floor_ms, 2), **extra)


# op: (kernel on a (source, destination) pair of slices, bytes moved per source byte)
BANDWIDTH_OPS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], object], int]] = {
    'numpy_sum': (lambda s, d: np.add.reduce(s), 1),
    # numpy's float32 sum is pairwise and partly compute-bound; torch's is a plain SIMD read
    'torch_sum': (lambda s, d: torch.from_numpy(s).sum(), 1),
    'numpy_copy': (lambda s, d: np.copyto(d, s), 2),
}


def bandwidth_gbps(args: argparse.Namespace, context: dict) -> tuple[str, float, float]:
    """Time each BANDWIDTH_OPS over a large float32 array with 1..n threads.

    Returns:
        The fastest single-thread read, the bandwidth a 1-thread scan can use: (op, GB per
        wall second, GB per CPU second).
    """
    src = np.ones(args.bandwidth_gib * GIB // FLOAT32_BYTES, dtype=np.float32)
    dst = np.zeros_like(src)                           # touched now, not during the timing
    torch.set_num_threads(1)                           # threads come from the pool below
    reads: dict[str, tuple[float, float]] = {}
    for op, (fn, passes) in BANDWIDTH_OPS.items():
        for threads in args.threads:
            # both libraries release the GIL here: threads over disjoint parts run in parallel
            parts = list(zip(np.array_split(src, threads), np.array_split(dst, threads)))
            with ThreadPoolExecutor(threads) as pool:
                times = sample_s(lambda: list(pool.map(lambda p: fn(*p), parts)), 1,
                                 args.bandwidth_runs)
            moved = passes * src.nbytes
            wall, cpu = rates(moved / 1e9, times)
            emit('bandwidth', context, op=op, threads=threads, array_bytes=src.nbytes,
                 bytes_moved=moved, **stats_ms(times), gbps=round(wall, 2),
                 gbps_best=round(moved / 1e9 / float(times[:, 0].min()), 2),
                 gbps_per_cpu_s=round(cpu, 2))
            if passes == 1 and threads == 1:
                reads[op] = wall, cpu
    best = max(reads, key=lambda op: reads[op][0])
    return best, *reads[best]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """(n, dim) float32 random rows of unit length, like normalised embeddings."""
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    faiss.normalize_L2(rows)
    return rows


def flat_index(n: int, dim: int, rng: np.random.Generator,
               chunk: int = 100_000) -> faiss.IndexFlatIP:
    """Fill an IndexFlatIP in chunks, so that only the index holds all n x dim floats."""
    index = faiss.IndexFlatIP(dim)
    for start in range(0, n, chunk):
        index.add(unit_rows(rng, min(chunk, n - start), dim))
    return index


def time_scan(n: int, dim: int, floors_ms: tuple[float, float],
              args: argparse.Namespace) -> dict[str, object]:
    """FAISS flat search, batch 1, and a bare torch GEMV over the same stored vectors.

    ``floors_ms`` is the scan's floor in wall time and in CPU time; the ratios are against it.
    """
    rng = np.random.default_rng(args.seed)
    index = flat_index(n, dim, rng)
    rows = np.split(unit_rows(rng, 64, dim), 64)
    queries = itertools.cycle(rows)
    times = sample_s(lambda: index.search(next(queries), args.k), 5, args.search_min_runs,
                     args.search_min_s)
    # a view of the index's own memory (no 3 GB copy at 1M x 768): the scan without the top-k
    xb = torch.from_numpy(faiss.rev_swig_ptr(index.get_xb(), n * dim).reshape(n, dim))
    vectors = itertools.cycle([torch.from_numpy(row[0]) for row in rows])
    gemv = sample_s(lambda: torch.mv(xb, next(vectors)), 5, args.search_min_runs,
                    args.search_min_s / 2)
    stats, gemv_ms = stats_ms(times), float(np.median(gemv[:, 0])) * 1e3
    return {'faiss': 'IndexFlatIP batch 1, 1 thread', 'k': args.k, **stats,
            'ns_per_entry': round(stats['median_ms'] * 1e6 / n, 1),
            'measured_over_floor': round(stats['median_ms'] / floors_ms[0], 2),
            'cpu_over_cpu_floor': round(stats['cpu_median_ms'] / floors_ms[1], 2),
            'torch_gemv_median_ms': round(gemv_ms, 3),
            'torch_gemv_over_floor': round(gemv_ms / floors_ms[0], 2)}


def scan_floors(read: tuple[str, float, float], args: argparse.Namespace,
                context: dict) -> None:
    """Bytes and floor of a flat scan per (N, d); timed where asked.

    ``read`` is (op, GB per wall second, GB per CPU second) of the fastest 1-thread read.
    """
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    timed_sizes = set(args.measure_sizes) | ({1_000_000} if args.with_1m else set())
    for n in args.scan_sizes:
        for dim in args.scan_dims:
            nbytes = n * dim * FLOAT32_BYTES
            floors_ms = nbytes / read[1] / 1e6, nbytes / read[2] / 1e6
            timed = n in timed_sizes and dim in args.measure_dims
            fields = time_scan(n, dim, floors_ms, args) if timed else {}
            emit('flat_scan', context, n=n, dim=dim, dtype='float32', bytes=nbytes,
                 bytes_per_entry=dim * FLOAT32_BYTES, read_op=read[0],
                 read_gbps_1thread=round(read[1], 2), read_gbps_per_cpu_s=round(read[2], 2),
                 floor_ms=round(floors_ms[0], 3), cpu_floor_ms=round(floors_ms[1], 3),
                 **fields)


def main() -> None:
    """Parse flags, then print the FLOP, GEMM, latency, bandwidth and flat-scan lines."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', choices=MODELS, default=list(MODELS),
                        help='models whose FLOPs are counted')
    parser.add_argument('--time-models', nargs='*', choices=MODELS, default=[MODELS[0]],
                        help='models timed against the GEMM floor (ViT-B/14 takes ~1 min here)')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--runs', type=int, default=10, help='timed forward passes per model')
    parser.add_argument('--squares', type=int, nargs='*', default=[2048],
                        help='square GEMM sizes measured besides the ViT shapes')
    parser.add_argument('--gemm-min-runs', type=int, default=5)
    parser.add_argument('--gemm-min-s', type=float, default=0.3)
    parser.add_argument('--bandwidth-gib', type=int, default=1)
    parser.add_argument('--bandwidth-runs', type=int, default=5)
    parser.add_argument('--scan-sizes', type=int, nargs='+', default=[10_000, 100_000, 1_000_000])
    parser.add_argument('--scan-dims', type=int, nargs='+', default=[32, 64, 128, 256, 768])
    parser.add_argument('--measure-sizes', type=int, nargs='*', default=[100_000],
                        help='map sizes whose FAISS search is timed')
    parser.add_argument('--measure-dims', type=int, nargs='*', default=[64, 768])
    parser.add_argument('--with-1m', action='store_true',
                        help='also time 1M-entry maps (3 GB of RAM at 768-d)')
    parser.add_argument('--k', type=int, default=5)
    parser.add_argument('--search-min-runs', type=int, default=20)
    parser.add_argument('--search-min-s', type=float, default=2.0)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    context = {'cpu': cpu_name(), 'cpu_count': os.cpu_count(),
               'date': datetime.date.today().isoformat(), **provenance()}
    timed, flops = {}, {}
    for name in dict.fromkeys(args.models + args.time_models):
        model, flops[name] = flops_line(name, args, context)
        if name in args.time_models:
            timed[name] = model
    if timed:
        compute_floors(timed, flops, args, context)
    del model, timed                                   # free them before the 2 GiB of arrays
    scan_floors(bandwidth_gbps(args, context), args, context)


if __name__ == '__main__':
    main()
