"""The node's parameters: one table, its ROS descriptors, and the config dataclasses they fill.

Each entry's default is the matching dataclass field (``backbone.*`` -> BackboneConfig,
``search.*`` -> SearchConfig, ``match.*`` -> MatchConfig, plain names -> NodeConfig), so CLI,
checkpoints and the node cannot drift apart. The one exception is stated in its entry
(``node_default``): ``backbone.runtime``, onnx-fp32 in the node (see ``NODE_RUNTIME``).
Validation is the dataclasses' ``__post_init__``: a run-time change goes through
``dataclasses.replace`` and a ConfigError becomes the refusal reason. This module loads
without ROS; only ``descriptors`` imports rcl_interfaces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from aesvc_vpr.config import BackboneConfig, LoopClosureConfig, MatchConfig, RUNTIMES, SearchConfig
from aesvc_vpr.config import FILTER_MODES, FilterConfig
from aesvc_vpr.errors import ConfigError
from aesvc_vpr.images.messages import DEFAULT_MAX_PIXELS

MODES = ('localization', 'loop_closure')   # loop_closure: docs/loop_closure.md
RELIABILITIES = ('auto', 'reliable', 'best_effort')
TRANSPORTS = ('raw', 'compressed')
MAX_WORKERS = 16
MIN_RATE_HZ = 0.1              # a lower cap would hold the next frame for minutes
# The node runs ONNX Runtime fp32, the CLI (map building) torch-fp32: on a CPU beside other
# processes torch-fp32 was the slowest runtime in every column, onnx-fp32 1.3-1.8x faster with
# descriptors equal to it (max abs diff ~1e-6; benchmarks/README.md, issue 18), and the runtime
# is not part of the backbone fingerprint, so a map built with either serves the node. Map
# building keeps torch-fp32: it runs on GPUs too, needs no export, and covers ViT-g (> 2 GB).
NODE_RUNTIME = 'onnx-fp32'
FRAME_MODES = ('local', 'utm')


@dataclass(frozen=True)
class NodeConfig:
    """Settings of the ROS shell itself (the core's settings live in the other dataclasses)."""

    head_path: str = ''            # projection head file; '' uses the map's own head, if any
    map_path: str = ''             # map directory with map.json (required)
    mode: str = 'localization'
    map_frame: str = 'map'         # frame_id of every output
    max_rate_hz: float = 0.0       # processing rate cap; 0 processes as fast as frames come
    # Frames in flight at once. 2 on 2 cores raised ViT-S int8 throughput 1.2-1.4x for 1.2-1.3x
    # the latency (benchmarks/README.md, 'Node and transport'); outputs may leave out of order.
    workers: int = 1
    # 'auto' matches the publishers found (reliable only if all offer it), as rosbag2 does:
    # across processes with default FastDDS, only a reliable subscription receives 640x480
    # frames from a reliable camera (benchmarks/README.md, 'Node and transport'), and only a
    # best-effort one connects to a sensor-data camera.
    image_reliability: str = 'auto'
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    autostart: bool = True         # configure and activate without a lifecycle manager
    # raw: Image on image; compressed: CompressedImage on image/compressed (one topic, as
    # image_pipeline nodes do)
    image_transport: str = 'raw'

    def __post_init__(self) -> None:
        """Refuse values the node cannot run with (ConfigError, message names the field)."""
        if self.mode not in MODES:
            raise ConfigError(f'mode must be one of {MODES}, got {self.mode!r}')
        if self.image_reliability not in RELIABILITIES:
            raise ConfigError(f'image_reliability must be one of {RELIABILITIES}, '
                              f'got {self.image_reliability!r}')
        if self.max_rate_hz != 0 and not self.max_rate_hz >= MIN_RATE_HZ:
            raise ConfigError(f'max_rate_hz must be 0 (no cap) or >= {MIN_RATE_HZ}, got '
                              f'{self.max_rate_hz}')
        if self.image_transport not in TRANSPORTS:
            raise ConfigError(f'image_transport must be one of {TRANSPORTS}, '
                              f'got {self.image_transport!r}')
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f'workers must be 1..{MAX_WORKERS}, got {self.workers}')
        if self.workers > 1 and self.mode == 'loop_closure':
            raise ConfigError('workers must be 1 in mode loop_closure: keyframes are decided '
                              'in frame order')
        if self.max_image_pixels < 1:
            raise ConfigError(f'max_image_pixels must be >= 1, got {self.max_image_pixels}')
        if not self.map_frame:
            raise ConfigError('map_frame must not be empty')


@dataclass(frozen=True)
class FrameConfig:
    """The frame positions are published in (docs/node.md, Frames; ``ros/frames.py``)."""

    # local: metres from the map's origin_utm (its first place rounded to 1 km), exact in the
    # float32 of RViz markers; utm: raw UTM easting/northing (float32 jitters ~0.5 m at 4e6 m)
    mode: str = 'local'
    utm_frame: str = 'utm'         # parent of map_frame in the static transform to UTM

    def __post_init__(self) -> None:
        """Refuse an unknown mode or an empty frame name."""
        if self.mode not in FRAME_MODES:
            raise ConfigError(f'frame.mode must be one of {FRAME_MODES}, got {self.mode!r}')
        if not self.utm_frame:
            raise ConfigError('frame.utm_frame must not be empty')


@dataclass(frozen=True)
class NodeSettings:
    """Everything the node is configured with, one dataclass per component."""

    backbone: BackboneConfig
    search: SearchConfig
    match: MatchConfig
    node: NodeConfig
    loop_closure: LoopClosureConfig
    filter: FilterConfig = FilterConfig()   # noqa: A003 (the parameter group is named filter)
    frame: FrameConfig = FrameConfig()


_SECTIONS = {'backbone': BackboneConfig, 'search': SearchConfig, 'match': MatchConfig,
             'node': NodeConfig, 'loop_closure': LoopClosureConfig,
             'filter': FilterConfig, 'frame': FrameConfig}


@dataclass(frozen=True)
class Param:
    """One node parameter; ``limits`` is an inclusive (low, high[, step]) range for numbers."""

    name: str
    description: str
    read_only: bool = False
    limits: tuple[float, ...] = ()
    node_default: Any = None       # the node's default where it differs from the dataclass

    @property
    def section(self) -> str:
        """Return the NodeSettings field (dataclass) this parameter belongs to."""
        return self.name.split('.')[0] if '.' in self.name else 'node'

    @property
    def field(self) -> str:
        """Return the dataclass field name."""
        return self.name.split('.')[-1]

    @property
    def path(self) -> list[str]:
        """Return the field names from the section down ('onnx', 'preset' for backbone.onnx.*)."""
        return self.name.split('.')[1:] if '.' in self.name else [self.name]

    @property
    def default(self) -> Any:
        """Return the dataclass default of the parameter; a tuple as a list, as ROS arrays come."""
        if self.node_default is not None:
            return self.node_default
        value: Any = _SECTIONS[self.section]()
        for part in self.path:
            value = getattr(value, part)
        return list(value) if isinstance(value, tuple) else value


PARAMS = (
    Param('backbone.model_name', "'auto', 'patchgrid', a timm DINOv2 name, or 'onnx' (weights: "
          'the .onnx file)', read_only=True),
    Param('backbone.weights', "weights file or directory; '' searches the usual caches",
          read_only=True),
    Param('backbone.input_size', 'square input side in pixels, a multiple of 14',
          read_only=True, limits=(14, 1022, 14)),
    Param('backbone.descriptor', 'cls | gem | cls+gem; must match the map', read_only=True),
    Param('backbone.gem_p', 'GeM power for the gem descriptors; must match the map',
          read_only=True, limits=(0.1, 100.0)),
    Param('backbone.device', 'torch device, e.g. cpu or cuda:0', read_only=True),
    Param('backbone.runtime', ' | '.join(RUNTIMES) + '; onnx-fp32 (the node default) and '
          'openvino run on the cpu only, torch-fp32 also on backbone.device cuda',
          read_only=True, node_default=NODE_RUNTIME),
    Param('backbone.calibration_images', "image folder openvino-int8 calibrates on; '' renders "
          'street views', read_only=True),
    Param('backbone.allow_download', "fetch Meta's checkpoint when no weights are found "
          '(needs internet)', read_only=True),
    # model_name onnx only (docs/backbone.md); all must match the map
    Param('backbone.onnx.preset', 'value scaling: imagenet | mobilenet-tf (p / 127.5 - 1) | '
          'custom (scale, offset, mean, std below)', read_only=True),
    Param('backbone.onnx.input_size', "square input side in pixels; 0: the model's own",
          read_only=True, limits=(0, 4096)),
    Param('backbone.onnx.resize', 'stretch | crop (keep aspect ratio, centre crop)',
          read_only=True),
    Param('backbone.onnx.channels', 'rgb | bgr', read_only=True),
    Param('backbone.onnx.layout', 'nchw | nhwc', read_only=True),
    Param('backbone.onnx.scale', 'custom preset: x = (p * scale + offset - mean) / std',
          read_only=True),
    Param('backbone.onnx.offset', 'custom preset: added after scale', read_only=True),
    Param('backbone.onnx.mean', 'custom preset: per-channel mean, 3 values', read_only=True),
    Param('backbone.onnx.std', 'custom preset: per-channel std, 3 values', read_only=True),
    Param('backbone.onnx.output', "output to read; '' the model's first", read_only=True),
    Param('backbone.onnx.pooling', 'none | avg | gem (backbone.gem_p) over a map or tokens',
          read_only=True),
    Param('backbone.onnx.normalised', 'the output is L2-normalised already (checked at load)',
          read_only=True),
    Param('head_path', "projection head file; '' uses the map's own head (none: raw "
          'backbone embeddings)', read_only=True),
    Param('map_path', 'map directory (with map.json) built by aesvc-vpr build-map',
          read_only=True),
    Param('search.prefix_dim', 'embedding prefix searched; a change re-indexes the stored '
          'full embeddings (no re-embedding)', limits=(1, 4096)),
    Param('search.index_type', "flat (exact) | ivf | hnsw | saved (the map's index file from "
          'aesvc-vpr index-map)', read_only=True),
    Param('search.threads', 'FAISS threads; 0: 1 for single queries', read_only=True,
          limits=(0, 256)),
    Param('search.shortlist_dim', 'funnel: shortlist at this prefix, re-rank exactly at '
          'prefix_dim; 0 (or >= prefix_dim) off', limits=(0, 4096)),
    Param('search.shortlist_k', 'candidates re-ranked exactly (funnel, saved index)',
          limits=(1, 100000)),
    Param('match.top_k', 'candidates published on ~/candidates', limits=(1, 1000)),
    Param('match.min_score', "cosine at or above which the frame's own best match is "
          'published on ~/place_match (filter off, or its belief still uniform)',
          limits=(-1.0, 1.0)),
    Param('match.radius_m', 'position sigma of a score-1 match in metres (covariance scale)',
          limits=(0.1, 10000.0)),
    Param('max_rate_hz', f'processing rate cap in Hz; 0: no cap, else >= {MIN_RATE_HZ}; '
          'applies at once', limits=(0.0, 1000.0)),
    Param('workers', 'frames processed at once; > 1 trades latency for throughput (each '
          'worker gets cores / workers backbone threads); localization mode only',
          read_only=True, limits=(1, MAX_WORKERS)),
    Param('max_image_pixels', 'larger images are refused unread (bad-frame counter)',
          limits=(1, 1_000_000_000)),
    Param('map_frame', 'frame_id of all outputs', read_only=True),
    Param('image_reliability', 'input QoS reliability: auto (match the publishers found) | '
          'reliable | best_effort', read_only=True),
    Param('mode', ' | '.join(MODES), read_only=True),
    Param('autostart', 'configure and activate at start, without a lifecycle manager',
          read_only=True),
    Param('image_transport', 'raw (Image on image) | compressed (CompressedImage on '
          'image/compressed)', read_only=True),
    # mode loop_closure only (docs/loop_closure.md); all change at run time
    Param('loop_closure.min_interval_s', 'keyframe after this many seconds (0: off)',
          limits=(0.0, 3600.0)),
    Param('loop_closure.min_distance_m', 'or after this much odometry travel (0: off)',
          limits=(0.0, 10000.0)),
    Param('loop_closure.min_embedding_change', 'or this appearance change, 1 - cosine (0: off)',
          limits=(0.0, 2.0)),
    Param('loop_closure.exclusion_s', 'only keyframes at least this many seconds old match',
          limits=(0.0, 1e6)),
    Param('loop_closure.exclusion_m', 'and at least this far back along the odometry path '
          '(0: off)', limits=(0.0, 1e6)),
    Param('loop_closure.min_score', 'cosine a loop candidate needs', limits=(-1.0, 1.0)),
    Param('loop_closure.consistency_k', 'consecutive agreeing frames needed (1: off)',
          limits=(1, 100)),
    Param('loop_closure.consistency_window_keyframes', 'how many keyframes apart consecutive '
          'agreeing matches may be', limits=(0, 10000)),
    Param('loop_closure.geometric_check', 'off | orb | sift (essential-matrix RANSAC)'),
    Param('loop_closure.min_inliers', 'RANSAC inliers the geometric check needs',
          limits=(5, 100000)),
    Param('loop_closure.focal_px', 'camera focal length in image pixels; 0: 1.2 x long side',
          limits=(0.0, 1e6)),
    Param('loop_closure.thumbnail_ring_size', 'keyframe thumbnails kept for the geometric check',
          limits=(0, 1_000_000)),
    Param('loop_closure.thumbnail_side', 'long side of a stored thumbnail in pixels',
          limits=(32, 4096)),
    Param('loop_closure.top_k', 'candidates the geometric check may try, best first',
          limits=(1, 100)),
    Param('loop_closure.odom_max_age_s', 'older odometry than this counts as missing',
          limits=(0.001, 3600.0)),
)
# mode localization: the sequence filter and pose priors (docs/localization_filter.md)
PARAMS += (
    Param('filter.mode', ' | '.join(FILTER_MODES) + ': hmm publishes the filtered place on '
          "~/place_match (~/candidates stays the frame's own ranking)"),
    Param('filter.top_k', 'candidates per frame the filter weighs', limits=(1, 1000)),
    Param('filter.speed_mps', 'speed prior in m/s, used while no odometry arrives on odom',
          limits=(0.0, 1000.0)),
    Param('filter.motion_sigma_m', 'spread of the distance travelled per frame, metres',
          limits=(0.01, 10000.0)),
    Param('filter.motion_noise', 'plus this fraction of the distance travelled',
          limits=(0.0, 10.0)),
    Param('filter.heading_weight', 'discount of moves against the direction of travel (0: off)',
          limits=(0.0, 100.0)),
    Param('filter.temperature', 'cosine difference that changes the likelihood e-fold',
          limits=(0.0001, 10.0)),
    Param('filter.floor', 'likelihood of places outside the top-k (top-1: 1)',
          limits=(0.000001, 1.0)),
    Param('filter.mixing', 'uniform belief mixed in per frame, for recovery',
          limits=(0.000001, 0.999)),
    Param('filter.max_support', 'places the belief tracks one by one', limits=(1, 1_000_000)),
    Param('filter.prior_sigma_m', 'pose prior std dev in metres; 0 takes the message covariance',
          limits=(0.0, 1e6)),
    Param('filter.prior_radius_sigmas', 'search restricted to this many sigmas around a prior',
          limits=(0.1, 100.0)),
    Param('filter.contradiction_frames', 'frames a prior may be contradicted before the search '
          'is global again', limits=(1, 10000)),
    Param('filter.odom_max_age_s', 'odometry farther than this from a frame is not used',
          limits=(0.001, 3600.0)),
    Param('filter.min_belief', "the filter's estimate goes on ~/place_match only when the belief "
          'within match.radius_m of it reaches this', limits=(0.0, 1.0)),
    Param('match.geometric_check', "off | orb | sift: re-rank ~/place_match's candidates by "
          'essential-matrix inliers with the map images (read from the paths the map stores)'),
    Param('match.min_probability', 'calibrated maps: ~/place_match only at or above this '
          'calibrated probability (uncalibrated maps ignore it)', limits=(0.0, 1.0)),
    Param('filter.navsat', "weigh in sensor_msgs/NavSatFix on 'fix', projected to the map's UTM "
          'zone', read_only=True),
)
# the published frame (docs/node.md, Frames)
PARAMS += (
    Param('frame.mode', "local (metres from the map's origin_utm, published on ~/map_origin "
          'and /tf_static) | utm (raw UTM easting/northing)', read_only=True),
    Param('frame.utm_frame', 'parent frame of map_frame in the static transform to UTM',
          read_only=True),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMS}


def default_values() -> dict[str, Any]:
    """Map every parameter name to its default value."""
    return {p.name: p.default for p in PARAMS}


def settings_from_values(values: Mapping[str, Any]) -> NodeSettings:
    """Build the config dataclasses from parameter values (missing names keep defaults).

    Raises:
        ConfigError: an unknown name, or a value the dataclasses refuse.
    """
    unknown = sorted(set(values) - set(PARAMS_BY_NAME))
    if unknown:
        raise ConfigError(f'unknown parameters {unknown}; known: {sorted(PARAMS_BY_NAME)}')
    fields: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    node_defaults = {p.name: p.node_default for p in PARAMS if p.node_default is not None}
    for name, value in {**node_defaults, **values}.items():
        param = PARAMS_BY_NAME[name]
        group = fields[param.section]
        for part in param.path[:-1]:   # nested groups (backbone.onnx.*) become dicts
            group = group.setdefault(part, {})
        group[param.path[-1]] = value
    return NodeSettings(**{s: cls(**fields[s]) for s, cls in _SECTIONS.items()})


def with_value(settings: NodeSettings, name: str, value: Any) -> NodeSettings:
    """Return settings with one parameter changed, validated by its dataclass.

    Raises:
        ConfigError: unknown name or invalid value; the message is the refusal reason.
    """
    if name not in PARAMS_BY_NAME:
        raise ConfigError(f'unknown parameter {name!r}')
    param = PARAMS_BY_NAME[name]
    try:
        changed = _replaced(getattr(settings, param.section), param.path, value)
    except TypeError as err:
        raise ConfigError(f'{name}: {err}') from err
    return dataclasses.replace(settings, **{param.section: changed})


def _replaced(config: Any, path: list[str], value: Any) -> Any:
    """Return ``config`` with the field at ``path`` set, each level re-validated."""
    if len(path) > 1:
        value = _replaced(getattr(config, path[0]), path[1:], value)
    return dataclasses.replace(config, **{path[0]: value})


def bounded_descriptor(declared: Any, high: int, why: str) -> Any:
    """Return a copy of a declared descriptor with its integer range capped at ``high``.

    For limits known only once something is loaded (``search.prefix_dim`` <= the head's output
    size), so ``ros2 param describe`` states the real bound.
    """
    name = declared.name
    descriptor = next(d for n, _, d in descriptors() if n == name)
    descriptor.type = declared.type
    descriptor.integer_range[0].to_value = high
    descriptor.description += f' (at most {high}: {why})'
    return descriptor


def descriptors() -> list[tuple[str, Any, Any]]:
    """(name, default, ParameterDescriptor) triples for ``Node.declare_parameters``."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    out = []
    for p in PARAMS:
        descriptor = ParameterDescriptor(name=p.name, description=p.description,
                                         read_only=p.read_only)
        if p.limits and isinstance(p.default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(p.limits[0]), to_value=float(p.limits[1]))]
        elif p.limits:
            step = int(p.limits[2]) if len(p.limits) > 2 else 0
            descriptor.integer_range = [IntegerRange(
                from_value=int(p.limits[0]), to_value=int(p.limits[1]), step=step)]
        out.append((p.name, p.default, descriptor))
    return out
