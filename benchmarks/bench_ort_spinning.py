r"""ONNX Runtime's intra-op spin-waiting on and off, 1 and 2 threads, beside 0 or 1 busy process.

ONNX Runtime's worker threads spin while they wait for work (``session.intra_op.allow_spinning``
on by default), which, like torch's OpenMP pool, costs time when another process holds a core.
This times one exported ViT-S/14 (random-init weights, the file ``onnx-fp32`` uses) in four
sessions, interleaved in each round after one untimed call each, and prints one JSON line per
busy setting with the median ms per image of each session. The sessions' outputs are checked
equal first (spinning changes scheduling, not arithmetic).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_ort_spinning.py --rounds 8 --busy 0 1
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import time

from bench_backbone import start_busy
import numpy as np

from aesvc_vpr.backbone.dinov2 import DinoV2Backbone
from aesvc_vpr.backbone.dinov2_archs import MODELS
from aesvc_vpr.backbone.weights import random_weights
from aesvc_vpr.common.provenance import provenance
from aesvc_vpr.config import BackboneConfig


def session(path: Path, threads: int, spin: bool):
    """Open an ONNX Runtime CPU session with ``threads`` intra-op threads, spinning or not."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry('session.intra_op.allow_spinning', '1' if spin else '0')
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def main() -> None:
    """Parse flags, then print one JSON line per --busy value."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='vit_small_patch14_dinov2', choices=list(MODELS))
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=8)
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 1])
    args = parser.parse_args()
    backbone = DinoV2Backbone(BackboneConfig(model_name=args.model, input_size=args.input_size,
                                             runtime='onnx-fp32'),
                              random_weights(MODELS[args.model], seed=0))
    path = backbone.runner.path
    sessions = {f'{"spin" if spin else "nospin"}_{threads}thr': session(path, threads, spin)
                for threads in (2, 1) for spin in (True, False)}
    pixels = np.random.default_rng(0).standard_normal(
        (1, 3, args.input_size, args.input_size)).astype(np.float32)
    name = next(iter(sessions.values())).get_inputs()[0].name
    outputs = [s.run(None, {name: pixels})[0] for s in sessions.values()]
    assert all(np.abs(o - outputs[0]).max() < 1e-4 for o in outputs), 'sessions disagree'
    for busy in args.busy:
        procs = start_busy(busy)
        try:
            times: dict[str, list[float]] = {k: [] for k in sessions}
            for _ in range(args.rounds):
                for key, sess in sessions.items():
                    sess.run(None, {name: pixels})      # untimed: the previous pool settles
                    start = time.perf_counter()
                    sess.run(None, {name: pixels})
                    times[key].append((time.perf_counter() - start) * 1e3)
        finally:
            for proc in procs:
                proc.terminate()
        print(json.dumps({
            'bench': 'ort_spinning', 'model': args.model, 'input_size': args.input_size,
            'busy_processes': busy, 'rounds': args.rounds,
            **{f'{k}_ms_p50': round(float(np.median(v)), 1) for k, v in times.items()},
            'load_avg_1m': round(os.getloadavg()[0], 2), **provenance()}), flush=True)


if __name__ == '__main__':
    main()
