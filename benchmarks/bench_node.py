r"""The node end to end, and image transport across processes, with real DDS.

Every ROS participant runs in its own process, as on a robot: a camera process publishes N
640x480 rgb8 frames at a fixed rate, and either a plain subscriber counts them (``--mode
transport``: which QoS reliability and FastDDS transport deliver what) or the node processes them
while a listener process times its outputs (``--mode node``: throughput, drops, latency image
stamp -> ~/candidates received, beside the node's own compute-only latency; RSS of the node
process at start and end). One JSON line per configuration.

    .venv/bin/python benchmarks/bench_node.py --mode transport --frames 241 --rate-hz 30
    .venv/bin/python benchmarks/bench_node.py --mode node --frames 600 --rate-hz 30 \\
        --map-size 10000 --runtimes openvino-int8 torch-fp32

The DINOv2 ViT-S/14 weights are timm's random initialisation saved to a file (no pretrained
weights exist on the benchmark machine): the descriptors mean nothing, the compute is real.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import select
import signal
import subprocess
import sys
import time

import numpy as np

HERE = Path(__file__).resolve()
# FASTDDS_BUILTIN_TRANSPORTS of (camera, subscriber): the subscriber side is all a node's launch
# file controls when the camera driver is someone else's.
TRANSPORTS = {'default': (None, None), 'large_data': ('LARGE_DATA', 'LARGE_DATA'),
              'large_data_subscriber_only': (None, 'LARGE_DATA')}
RELIABILITIES = ('reliable', 'best_effort')


def git_commit() -> str:
    """HEAD of the working tree, or 'unknown'."""
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                              check=True, cwd=HERE.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def qos(reliability: str, depth: int):
    """Return a KEEP_LAST profile with the given reliability."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    policy = (ReliabilityPolicy.RELIABLE if reliability == 'reliable'
              else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=depth, reliability=policy)


def percentiles_ms(samples_s: list[float]) -> dict[str, float | None]:
    if not samples_s:
        return {'p50_ms': None, 'p95_ms': None}
    p50, p95 = np.percentile(np.asarray(samples_s) * 1e3, [50, 95])
    return {'p50_ms': round(float(p50), 2), 'p95_ms': round(float(p95), 2)}


def run_camera(args: argparse.Namespace) -> None:
    """Publish frames like a camera driver: reliable depth 10, or best-effort sensor QoS."""
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_camera')
    depth = 10 if args.reliability == 'reliable' else 5
    pub = node.create_publisher(Image, args.topic, qos(args.reliability, depth))
    rng = np.random.default_rng(args.seed)
    frames = [rng.integers(0, 256, (args.height, args.width, 3), np.uint8).tobytes()
              for _ in range(4)]
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    matched = pub.get_subscription_count()
    time.sleep(1.0)  # let the reader side finish matching too
    period = 1.0 / args.rate_hz if args.rate_hz > 0 else 0.0
    sent = errors = 0
    start = time.monotonic()
    for i in range(args.frames):
        if period:
            time.sleep(max(0.0, start + i * period - time.monotonic()))
        msg = Image(height=args.height, width=args.width, encoding='rgb8',
                    step=3 * args.width, data=frames[i % len(frames)])
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = 'camera'
        try:
            pub.publish(msg)
            sent += 1
        except RCLError:
            errors += 1
    elapsed = time.monotonic() - start
    time.sleep(0.5)
    print(json.dumps({'sent': sent, 'publish_errors': errors, 'matched': matched,
                      'publish_s': round(elapsed, 3)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def stamp_latency(node, latencies: list[float]):
    """Return a callback that records header.stamp -> receive time of each message in s."""
    def record(msg) -> None:
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((node.get_clock().now().nanoseconds - stamp_ns) * 1e-9)
    return record


def spin_and_report(node, report) -> None:
    """Spin until SIGINT, then print ``report()`` as a JSON line and shut down."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps(report()), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def run_sink(args: argparse.Namespace) -> None:
    """Count frames and their stamp -> receive latency until SIGINT."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_sink')
    latencies: list[float] = []
    node.create_subscription(Image, args.topic, stamp_latency(node, latencies),
                             qos(args.reliability, 1))
    print('READY', flush=True)
    spin_and_report(node, lambda: {'received': len(latencies), **percentiles_ms(latencies)})


def run_listener(args: argparse.Namespace) -> None:
    """Time vpr_node's ~/candidates (stamp -> receive) and keep its latest diagnostics."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseArray
    import rclpy

    rclpy.init()
    node = rclpy.create_node('bench_listener')
    latencies: list[float] = []
    diagnostics: dict[str, str] = {}
    ready = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith('vpr_node'):
                diagnostics.update({kv.key: kv.value for kv in status.values})
                if not ready and diagnostics.get('state') == 'active':
                    ready.append(True)
                    print('READY', flush=True)

    node.create_subscription(PoseArray, '/vpr_node/candidates', stamp_latency(node, latencies),
                             100)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    spin_and_report(node, lambda: {'received': len(latencies), **percentiles_ms(latencies),
                                   'diagnostics': diagnostics})


def child(role: str, args: argparse.Namespace, env: dict[str, str], *extra: str):
    """Start this script in another role, in its own process."""
    cmd = [sys.executable, str(HERE), '--role', role, '--topic', args.topic, '--seed',
           str(args.seed), '--frames', str(args.frames), '--rate-hz', str(args.rate_hz),
           '--width', str(args.width), '--height', str(args.height), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def last_json(proc: subprocess.Popen, interrupt: bool, timeout_s: float = 60.0) -> dict:
    """Stop a child (SIGINT) if asked, and parse the last JSON line it printed."""
    if interrupt:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=timeout_s)
    lines = [line for line in out.splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else {}


def wait_ready(proc: subprocess.Popen, timeout_s: float = 120.0,
               other: subprocess.Popen | None = None) -> None:
    """Wait for a child's READY line; fail if it or ``other`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if other is not None and other.poll() is not None:
            raise RuntimeError(f'{other.args[:3]} exited with {other.returncode}')
        if not select.select([proc.stdout], [], [], 1.0)[0]:
            continue
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f'child exited with {proc.wait()} before it was ready')
        if line.startswith('READY'):
            return
    raise RuntimeError('child was not ready in time')


def environment(builtin_transports: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(os.getpid() % 100 + 100))
    env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    if builtin_transports:
        env['FASTDDS_BUILTIN_TRANSPORTS'] = builtin_transports
    return env


def camera_time_s(args: argparse.Namespace) -> float:
    """Bound a camera child's run time: matching, publishing, slack."""
    return 60.0 + (args.frames / args.rate_hz if args.rate_hz > 0 else 0.0)


def bench_transport(args: argparse.Namespace, common: dict) -> None:
    """Delivery of every (transport, camera reliability, subscriber reliability) pair."""
    for transport in args.transports:
        camera_env, sink_env = (environment(t) for t in TRANSPORTS[transport])
        for pub_rel in RELIABILITIES:
            for sub_rel in RELIABILITIES:
                sink = child('sink', args, sink_env, '--reliability', sub_rel)
                wait_ready(sink)
                camera = child('camera', args, camera_env, '--reliability', pub_rel)
                sent = last_json(camera, interrupt=False, timeout_s=camera_time_s(args))
                time.sleep(1.0)
                got = last_json(sink, interrupt=True)
                frames = sent.get('sent', 0)
                print(json.dumps({
                    **common, 'bench': 'node_transport', 'transport': transport,
                    'camera_reliability': pub_rel, 'subscriber_reliability': sub_rel,
                    'rate_hz': args.rate_hz, 'frames': args.frames, **sent,
                    'received': got.get('received', 0),
                    'delivered_fraction': round(got.get('received', 0) / max(frames, 1), 3),
                    'latency_p50_ms': got.get('p50_ms'), 'latency_p95_ms': got.get('p95_ms'),
                }), flush=True)


def write_map(args: argparse.Namespace, root: Path) -> list[str]:
    """Write random weights and a random map for them; return the node's -p arguments."""
    from safetensors.torch import save_file

    from aesvc_vpr.backbone.dinov2_archs import MODELS
    from aesvc_vpr.backbone.registry import load_backbone
    from aesvc_vpr.backbone.weights import random_weights
    from aesvc_vpr.config import BackboneConfig
    from aesvc_vpr.retrieval.mapdb import MapDatabase

    weights = ''
    if args.model_name in MODELS:
        weights = str(root / 'random_dinov2.safetensors')
        save_file(random_weights(MODELS[args.model_name], args.seed).state_dict, weights)
    backbone = load_backbone(BackboneConfig(model_name=args.model_name, weights=weights,
                                            input_size=args.input_size))
    rng = np.random.default_rng(args.seed)
    raw = rng.standard_normal((args.map_size, backbone.dim)).astype(np.float32)
    utm = rng.uniform(0, 5000, (args.map_size, 2)) + [500_000.0, 4_000_000.0]
    MapDatabase.write(root / 'map', raw, utm, '17T', backbone_name=backbone.name,
                      backbone_fingerprint=backbone.fingerprint)
    params = [f'backbone.model_name:={args.model_name}', f'map_path:={root / "map"}',
              f'search.prefix_dim:={args.prefix_dim}',
              f'backbone.input_size:={args.input_size}']
    return params + ([f'backbone.weights:={weights}'] if weights else [])


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB, from /proc."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def measure_node(args: argparse.Namespace, node_params: list[str], runtime: str,
                 config: str) -> dict:
    """One configuration: camera process -> vpr_node process -> listener process."""
    transport, camera_rel, node_rel = config.split(':')
    camera_env, node_env = (environment(t) for t in TRANSPORTS[transport])
    params = [*node_params, f'backbone.runtime:={runtime}', f'image_reliability:={node_rel}']
    node = subprocess.Popen(
        [sys.executable, '-m', 'aesvc_vpr.ros.node', '--ros-args',
         *(a for p in params for a in ('-p', p)), '-r', f'image:={args.topic}'],
        env=node_env, stdout=subprocess.DEVNULL)
    listener = child('listener', args, node_env)
    try:
        wait_ready(listener, args.startup_timeout_s, other=node)
        rss_start = rss_mb(node.pid)
        camera = child('camera', args, camera_env, '--reliability', camera_rel)
        sent = last_json(camera, interrupt=False, timeout_s=camera_time_s(args))
        time.sleep(2.5)   # the last frame's output and a fresh diagnostics message
        rss_end = rss_mb(node.pid)
        heard = last_json(listener, interrupt=True)
        node.send_signal(signal.SIGINT)
        node.wait(60)
    finally:
        for proc in (listener, node):
            if proc.poll() is None:
                proc.kill()
    diag = heard.get('diagnostics', {})
    frames, processed = sent.get('sent', 0), heard.get('received', 0)
    compute_p50 = float(diag.get('compute_p50_ms', 'nan'))
    return {
        'runtime': runtime, 'transport': transport, 'camera_reliability': camera_rel,
        'node_reliability': node_rel, **sent, 'node_received': int(diag.get('received', 0)),
        'node_dropped': int(diag.get('dropped', 0)), 'processed': processed,
        'throughput_hz': round(processed / max(sent.get('publish_s', 1), 1e-9), 2),
        'drop_rate': round(1 - processed / max(frames, 1), 3),
        'latency_p50_ms': heard.get('p50_ms'), 'latency_p95_ms': heard.get('p95_ms'),
        'compute_p50_ms': compute_p50, 'compute_p95_ms': float(diag.get('compute_p95_ms', 'nan')),
        'latency_over_compute_p50': round((heard.get('p50_ms') or float('nan')) / compute_p50, 2),
        'rss_start_mib': round(rss_start, 1), 'rss_end_mib': round(rss_end, 1),
    }


def bench_node(args: argparse.Namespace, common: dict) -> None:
    """Every (runtime, configuration) pair on one generated map."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix='bench_node_') as tmp:
        node_params = write_map(args, Path(tmp))
        for runtime in args.runtimes:
            for config in args.configs:
                for workers in args.workers:
                    print(json.dumps({
                        **common, 'bench': 'node', 'model_name': args.model_name,
                        'input_size': args.input_size, 'map_size': args.map_size,
                        'prefix_dim': args.prefix_dim, 'rate_hz': args.rate_hz, 'workers': workers,
                        **measure_node(args, [*node_params, f'workers:={workers}'], runtime,
                                       config)}), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mode', choices=('transport', 'node'), default='node')
    parser.add_argument('--role', choices=('main', 'camera', 'sink', 'listener'), default='main')
    parser.add_argument('--frames', type=int, default=241)
    parser.add_argument('--rate-hz', type=float, default=30.0, help='0: as fast as possible')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--topic', default='/bench/image')
    parser.add_argument('--reliability', choices=RELIABILITIES, default='reliable')
    parser.add_argument('--transports', nargs='+', choices=list(TRANSPORTS),
                        default=list(TRANSPORTS))
    parser.add_argument('--seed', type=int, default=0)
    node = parser.add_argument_group('--mode node')
    node.add_argument('--model-name', default='vit_small_patch14_dinov2',
                      help="a DINOv2 timm name (random weights) or 'patchgrid'")
    node.add_argument('--runtimes', nargs='+', default=['openvino-int8', 'torch-fp32'])
    node.add_argument('--input-size', type=int, default=224,
                      help="the backbone's input side; the map is built for it")
    node.add_argument('--map-size', type=int, default=10_000)
    node.add_argument('--prefix-dim', type=int, default=64)
    node.add_argument('--configs', nargs='+', metavar='TRANSPORT:CAMERA_QOS:NODE_QOS',
                      default=['default:reliable:reliable', 'default:reliable:best_effort',
                               'large_data:best_effort:best_effort'])
    node.add_argument('--workers', type=int, nargs='+', default=[1],
                      help="the node's workers parameter; several values run one after another")
    node.add_argument('--startup-timeout-s', type=float, default=600.0,
                      help='model load and a first ONNX export can take minutes')
    return parser.parse_args()


def main() -> None:
    """Run one role; the main role starts the others and prints the JSON lines."""
    args = parse_args()
    roles = {'camera': run_camera, 'sink': run_sink, 'listener': run_listener}
    if args.role in roles:
        roles[args.role](args)
        return
    import rclpy
    common = {'git_commit': git_commit(), 'python': sys.version.split()[0],
              'rclpy': getattr(rclpy, '__version__', 'unknown'), 'cpus': os.cpu_count(),
              'rmw': os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')}
    if args.mode == 'transport':
        bench_transport(args, common)
    else:
        bench_node(args, common)


if __name__ == '__main__':
    main()
