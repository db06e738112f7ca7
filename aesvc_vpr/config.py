"""Frozen configuration dataclasses: CLI flags, ROS parameters and files all end up as these.

Each component takes its own dataclass. ``__post_init__`` validates, so ``dataclasses.replace``
re-checks a changed value (the node relies on this to refuse bad ``ros2 param set`` calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aesvc_vpr.errors import ConfigError

DESCRIPTORS = ('cls', 'gem', 'cls+gem')
RUNTIMES = ('torch-fp32', 'torch-bf16', 'onnx-fp32', 'onnx-int8', 'openvino-fp32',
            'openvino-int8')
DEFAULT_PREFIX_SIZES = (8, 16, 32, 64, 128, 256)
GEOMETRIC_CHECKS = ('off', 'orb', 'sift')
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# each ONNX preset's (scale, offset, mean, std): x = (p * scale + offset - mean) / std
ONNX_PRESETS = {'imagenet': (1 / 255, 0.0, IMAGENET_MEAN, IMAGENET_STD),
                'mobilenet-tf': (1 / 127.5, -1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}
ONNX_RESIZES = ('stretch', 'crop')
ONNX_CHANNELS = ('rgb', 'bgr')
ONNX_LAYOUTS = ('nchw', 'nhwc')
ONNX_POOLINGS = ('none', 'avg', 'gem')


@dataclass(frozen=True)
class OnnxConfig:
    """How images enter an ONNX image embedder and how its output becomes one vector.

    A pixel value p (0-255) of channel c becomes ``(p * scale + offset - mean[c]) / std[c]``;
    ``preset`` names the four values, and ``custom`` takes them from the fields below (which
    must stay at their defaults under any other preset, so no setting is silently ignored).
    """

    preset: str = 'imagenet'       # imagenet | mobilenet-tf (p / 127.5 - 1) | custom
    input_size: int = 0            # square input side in pixels; 0: the model's own H and W
    resize: str = 'stretch'        # stretch (aspect not kept) | crop (short side, centre crop)
    channels: str = 'rgb'          # rgb | bgr
    layout: str = 'nchw'           # nchw | nhwc: where the model wants the channel axis
    scale: float = 1 / 255         # custom only
    offset: float = 0.0            # custom only
    mean: tuple[float, ...] = IMAGENET_MEAN   # custom only, per colour R, G, B (also for bgr)
    std: tuple[float, ...] = IMAGENET_STD     # custom only
    output: str = ''               # the output to read; '' the model's first output
    pooling: str = 'none'          # none | avg | gem over a spatial map or tokens (gem: gem_p)
    normalised: bool = False       # the output is already L2-normalised (checked at load)

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
        object.__setattr__(self, 'std', tuple(float(v) for v in self.std))
        choices = {'preset': (*ONNX_PRESETS, 'custom'), 'resize': ONNX_RESIZES,
                   'channels': ONNX_CHANNELS, 'layout': ONNX_LAYOUTS, 'pooling': ONNX_POOLINGS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f'backbone.onnx.{name} must be one of {allowed}, got '
                                  f'{getattr(self, name)!r}')
        if self.input_size < 0:
            raise ConfigError(f'backbone.onnx.input_size must be >= 0, got {self.input_size}')
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError('backbone.onnx.mean and std need 3 values each, std > 0, got '
                              f'{self.mean} and {self.std}')
        if self.scale == 0:
            raise ConfigError('backbone.onnx.scale must not be 0')
        defaults = (1 / 255, 0.0, IMAGENET_MEAN, IMAGENET_STD)
        if self.preset != 'custom' and (self.scale, self.offset, self.mean, self.std) != defaults:
            raise ConfigError(f'backbone.onnx.preset is {self.preset!r}, which sets scale, '
                              'offset, mean and std; set backbone.onnx.preset to custom to give '
                              'them yourself')

    def scaling(self) -> tuple[float, float, tuple[float, ...], tuple[float, ...]]:
        """Return the (scale, offset, mean, std) in force: the preset's, or the fields'."""
        if self.preset == 'custom':
            return self.scale, self.offset, self.mean, self.std
        return ONNX_PRESETS[self.preset]


@dataclass(frozen=True)
class BackboneConfig:
    """Which image encoder to run, on what, and how its input is prepared."""

    # 'auto': DINOv2 ViT-S/14 when its weights are found locally, else the weights-free baseline.
    # Otherwise a timm name passed through unchanged (vit_small_patch14_dinov2,
    # vit_base_patch14_reg4_dinov2, ...) or 'patchgrid' (the weights-free baseline).
    model_name: str = 'auto'
    weights: str = ''              # file or Hugging Face directory; '' searches the usual caches
    input_size: int = 224          # square side in pixels, a multiple of 14 for DINOv2
    descriptor: str = 'cls'        # cls | gem | cls+gem
    gem_p: float = 3.0             # GeM power over patch tokens
    device: str = 'cpu'
    runtime: str = 'torch-fp32'    # one of RUNTIMES
    # openvino-int8 calibrates on these images (a folder, searched recursively); '' renders
    # street views of the synthetic town. Images from the robot's own area are best.
    calibration_images: str = ''
    batch_size: int = 8
    allow_download: bool = False   # never touch the network unless the user opts in
    # model_name 'onnx' (or 'onnx:PATH'): pre- and post-processing of the ONNX model in weights
    onnx: OnnxConfig = field(default_factory=OnnxConfig)

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if isinstance(self.onnx, dict):   # from node parameters or a stored asdict()
            object.__setattr__(self, 'onnx', OnnxConfig(**self.onnx))
        if self.input_size < 14 or self.input_size % 14:
            raise ConfigError('backbone.input_size must be a positive multiple of 14, '
                              f'got {self.input_size}')
        if self.descriptor not in DESCRIPTORS:
            raise ConfigError(f'backbone.descriptor must be one of {DESCRIPTORS}, '
                              f'got {self.descriptor!r}')
        if self.runtime not in RUNTIMES:
            raise ConfigError(f'backbone.runtime must be one of {RUNTIMES}, got {self.runtime!r}')
        if self.gem_p <= 0:
            raise ConfigError(f'backbone.gem_p must be > 0, got {self.gem_p}')
        if self.batch_size < 1:
            raise ConfigError(f'backbone.batch_size must be >= 1, got {self.batch_size}')


@dataclass(frozen=True)
class ImageConfig:
    """Which images are decoded at all: one policy for maps, evaluation, bags and the node."""

    # 16 x 16: a smaller image holds no recognisable place (a 1 x 1 image is a broken file)
    min_pixels: int = 256
    # 50 MP: above any camera a robot streams; checked from the header before decoding
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.min_pixels < 1 or self.max_pixels < self.min_pixels:
            raise ConfigError('images need 1 <= min_pixels <= max_pixels, got '
                              f'{self.min_pixels} and {self.max_pixels}')


@dataclass(frozen=True)
class HeadConfig:
    """Shape of the AE-SVC autoencoder and the (SS)2D student."""

    latent_dim: int = 256
    hidden_dim: int = 0            # 0: halfway between input and latent sizes
    prefix_sizes: tuple[int, ...] = DEFAULT_PREFIX_SIZES
    # 1: encoder and student are a linear map plus an MLP residual (the whitening start needs it)
    shortcut: int = 1
    decoder_shortcut: int = 1      # 1: the decoder too (head files before format 2 have 0)

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        sizes = tuple(self.prefix_sizes)
        if self.latent_dim < 1:
            raise ConfigError(f'head.latent_dim must be >= 1, got {self.latent_dim}')
        if self.shortcut not in (0, 1) or self.decoder_shortcut not in (0, 1):
            raise ConfigError('head.shortcut and head.decoder_shortcut must be 0 or 1, got '
                              f'{self.shortcut}, {self.decoder_shortcut}')
        if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
            raise ConfigError(f'head.prefix_sizes must be increasing positive sizes, got {sizes}')
        if sizes[-1] > self.latent_dim:
            raise ConfigError(
                f'head.prefix_sizes max {sizes[-1]} exceeds head.latent_dim {self.latent_dim}')
        object.__setattr__(self, 'prefix_sizes', sizes)


@dataclass(frozen=True)
class TrainConfig:
    """Loss weights and optimisation settings; the [U] items of PAPER.md are options here.

    docs/head.md ("Training") explains each choice and what it was measured against.
    """

    w_rec: float = 25.0            # the AE-SVC loss weights (PAPER.md)
    w_cov: float = 1.0
    w_var: float = 15.0
    w_mean: float = 1.0
    tau: float = 0.1
    tau_size_exponent: float = 0.5  # prefix d distils at tau * (d_teacher / d) ** this
    size_weights: tuple[float, ...] = ()   # one per prefix size; empty means equal weights
    epochs: int = 40               # student epochs at most
    teacher_epochs: int = 30       # teacher epochs at most (0: the closed-form start)
    batch_size: int = 256
    lr: float = 1e-3               # student residual
    linear_lr: float = 1e-4        # student linear path (starts as the whitening)
    teacher_lr: float = 1e-4
    weight_decay: float = 0.0
    val_fraction: float = 0.2      # map rows held out to choose epochs
    patience: int = 10             # epochs without a better held-out score before stopping
    shrink_rank: int = 64          # output scale sqrt(lam / (lam + lam_rank)); 0: full whitening
    whiten_folds: int = 5          # folds of the held-out variance of each whitened axis
    refit: int = 1                 # 1: retrain on all rows with the chosen epochs
    seed: int = 0
    threads: int = 1               # torch CPU threads while training; 0 keeps torch's default

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.tau <= 0:
            raise ConfigError(f'train.tau must be > 0, got {self.tau}')
        if not 0.0 <= self.tau_size_exponent <= 1.0:
            raise ConfigError('train.tau_size_exponent must be in [0, 1], got '
                              f'{self.tau_size_exponent}')
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f'train.val_fraction must be in (0, 0.5), got {self.val_fraction}')
        if self.threads < 0:
            raise ConfigError(f'train.threads must be >= 0, got {self.threads}')
        if self.epochs < 0 or self.teacher_epochs < 0 or self.batch_size < 2 or \
                self.patience < 1:
            raise ConfigError('train.epochs >= 0, train.teacher_epochs >= 0, train.batch_size '
                              '>= 2 and train.patience >= 1 are required')
        if min(self.w_rec, self.w_cov, self.w_var, self.w_mean, self.weight_decay) < 0 or \
                min(self.lr, self.linear_lr, self.teacher_lr) <= 0:
            raise ConfigError('train loss weights and weight_decay must be >= 0 and the '
                              'learning rates > 0')
        if self.shrink_rank < 0 or self.whiten_folds < 0 or self.refit not in (0, 1):
            raise ConfigError('train.shrink_rank >= 0, train.whiten_folds >= 0 and train.refit '
                              '0 or 1 are required')
        object.__setattr__(self, 'size_weights', tuple(float(w) for w in self.size_weights))


@dataclass(frozen=True)
class SearchConfig:
    """How the map is searched."""

    prefix_dim: int = 64           # leading embedding dimensions used for search
    index_type: str = 'flat'       # flat (exact) | ivf | hnsw | saved (the map's index file)
    threads: int = 0               # FAISS threads; 0: 1 for single queries, all cores for batches
    shortlist_dim: int = 0         # funnel: shortlist at this prefix, re-rank at prefix_dim; 0 off
    shortlist_k: int = 400         # candidates re-ranked exactly (funnel and saved index)

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.prefix_dim < 1:
            raise ConfigError(f'search.prefix_dim must be >= 1, got {self.prefix_dim}')
        if self.index_type not in ('flat', 'ivf', 'hnsw', 'saved'):
            raise ConfigError('search.index_type must be flat, ivf, hnsw or saved, '
                              f'got {self.index_type!r}')
        if self.threads < 0:
            raise ConfigError(f'search.threads must be >= 0, got {self.threads}')
        if self.shortlist_dim < 0:
            raise ConfigError(f'search.shortlist_dim must be >= 0, got {self.shortlist_dim}')
        if self.shortlist_k < 1:
            raise ConfigError(f'search.shortlist_k must be >= 1, got {self.shortlist_k}')


@dataclass(frozen=True)
class MatchConfig:
    """What counts as a match, and what is reported."""

    top_k: int = 5                 # candidates taken from the index
    min_score: float = 0.0         # best match published only at or above this cosine
    radius_m: float = 25.0         # a retrieved place within this distance counts as correct
    # re-rank the published top-k by essential-matrix inliers with the map images (issue 15)
    geometric_check: str = 'off'   # off | orb | sift
    # on a calibrated map, ~/place_match only at or above this calibrated probability
    min_probability: float = 0.0

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.top_k < 1:
            raise ConfigError(f'match.top_k must be >= 1, got {self.top_k}')
        if not 0.0 <= self.min_probability <= 1.0:
            raise ConfigError(f'match.min_probability must be in [0, 1], got '
                              f'{self.min_probability}')
        if self.geometric_check not in GEOMETRIC_CHECKS:
            raise ConfigError(f'match.geometric_check must be one of {GEOMETRIC_CHECKS}, '
                              f'got {self.geometric_check!r}')
        if not -1.0 <= self.min_score <= 1.0:
            raise ConfigError(f'match.min_score must be in [-1, 1], got {self.min_score}')
        if self.radius_m <= 0:
            raise ConfigError(f'match.radius_m must be > 0, got {self.radius_m}')


@dataclass(frozen=True)
class RecallConfig:
    """The evaluation protocol (standard VPR: positives within 25 m, Recall@1/5/10/20)."""

    radius_m: float = 25.0
    recall_at: tuple[int, ...] = (1, 5, 10, 20)
    map_at: int = 4


@dataclass(frozen=True)
class LoopClosureConfig:
    """When a frame becomes a keyframe, which keyframes may match, and what a match must pass.

    A frame becomes a keyframe when any enabled criterion (a value > 0) fires; with all three at
    0 every frame is a keyframe. Distances come from the optional odometry.
    """

    min_interval_s: float = 1.0          # keyframe after this much time ...
    min_distance_m: float = 2.0          # ... or this much odometry travel (needs odometry) ...
    min_embedding_change: float = 0.0    # ... or this change (1 - cosine) from the last keyframe
    exclusion_s: float = 30.0            # only keyframes at least this old may match
    exclusion_m: float = 0.0             # and at least this far back along the travelled path
    min_score: float = 0.9               # cosine of the prefix embeddings
    consistency_k: int = 3               # consecutive agreeing frames needed; 1 = off
    consistency_window_keyframes: int = 3  # agreeing matches lie this close in the map
    geometric_check: str = 'off'         # off | orb | sift
    min_inliers: int = 30                # essential-matrix RANSAC inliers for the geometric check
    focal_px: float = 0.0                # camera focal length in image pixels; 0: 1.2 * long side
    thumbnail_ring_size: int = 500       # keyframe thumbnails kept for the geometric check
    thumbnail_side: int = 320            # long side of a stored thumbnail, pixels
    top_k: int = 3                       # candidates the geometric check may try, best first
    odom_max_age_s: float = 0.5          # older odometry than this counts as missing

    def __post_init__(self) -> None:
        """Validate, so that the node's ``dataclasses.replace`` re-checks every change."""
        for name in ('min_interval_s', 'min_distance_m', 'exclusion_s', 'exclusion_m',
                     'focal_px'):
            if getattr(self, name) < 0:
                raise ConfigError(f'loop_closure.{name} must be >= 0, got {getattr(self, name)}')
        if not 0.0 <= self.min_embedding_change <= 2.0:
            raise ConfigError('loop_closure.min_embedding_change is 1 - cosine, so in [0, 2]; '
                              f'got {self.min_embedding_change}')
        if not -1.0 <= self.min_score <= 1.0:
            raise ConfigError(f'loop_closure.min_score must be in [-1, 1], got {self.min_score}')
        for name in ('consistency_k', 'top_k'):
            if getattr(self, name) < 1:
                raise ConfigError(f'loop_closure.{name} must be >= 1, got {getattr(self, name)}')
        if self.consistency_window_keyframes < 0:
            raise ConfigError('loop_closure.consistency_window_keyframes must be >= 0, '
                              f'got {self.consistency_window_keyframes}')
        if self.geometric_check not in GEOMETRIC_CHECKS:
            raise ConfigError(f'loop_closure.geometric_check must be one of {GEOMETRIC_CHECKS}, '
                              f'got {self.geometric_check!r}')
        if self.min_inliers < 5:
            raise ConfigError('loop_closure.min_inliers must be >= 5 (an essential matrix needs '
                              f'5 points), got {self.min_inliers}')
        if self.thumbnail_side < 32:
            raise ConfigError(
                f'loop_closure.thumbnail_side must be >= 32 px, got {self.thumbnail_side}')
        if self.thumbnail_ring_size < 0:
            raise ConfigError('loop_closure.thumbnail_ring_size must be >= 0, '
                              f'got {self.thumbnail_ring_size}')
        if self.geometric_check != 'off' and self.thumbnail_ring_size == 0:
            raise ConfigError('loop_closure.geometric_check needs keyframe thumbnails: set '
                              'loop_closure.thumbnail_ring_size > 0')
        if self.odom_max_age_s <= 0:
            raise ConfigError(
                f'loop_closure.odom_max_age_s must be > 0, got {self.odom_max_age_s}')


FILTER_MODES = ('off', 'hmm')


@dataclass(frozen=True)
class FilterConfig:
    """The sequence filter over map places (docs/localization_filter.md).

    A forward Bayes filter: the belief moves with the distance travelled (odometry, else
    ``speed_mps`` times the time between frames), each frame's top-k scores reweight it, and a
    little uniform mass is mixed in so a wrong belief recovers.
    """

    mode: str = 'hmm'              # off | hmm (off: each frame's own best match)
    top_k: int = 20                # candidates per frame the observation uses
    speed_mps: float = 1.0         # speed prior when no odometry comes in
    motion_sigma_m: float = 5.0    # spread of the distance travelled, plus ...
    motion_noise: float = 0.3      # ... this fraction of the distance
    # moves against the belief's recent direction of travel weigh exp(heading_weight * (cos - 1))
    heading_weight: float = 2.0
    temperature: float = 0.02      # cosine difference that changes the likelihood e-fold
    floor: float = 0.01            # likelihood of places outside the top-k (top-1: 1)
    mixing: float = 0.01           # uniform mass mixed in per frame (recovery)
    max_support: int = 500         # places the belief tracks one by one; the rest is uniform
    prior_sigma_m: float = 0.0     # pose prior: std dev; 0 takes the covariance of the message
    prior_radius_sigmas: float = 3.0   # search restricted to this many sigmas around a prior
    contradiction_frames: int = 10     # frames a prior may be contradicted before global search
    odom_max_age_s: float = 0.5    # odometry farther than this from a frame's stamp is not used
    navsat: bool = False           # weigh in sensor_msgs/NavSatFix on ``fix`` (map's UTM zone)
    # ~/place_match only when the belief within match.radius_m of the estimate reaches this
    # (the filter's gate; match.min_score gates only the frame's own matches)
    min_belief: float = 0.0

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.mode not in FILTER_MODES:
            raise ConfigError(f'filter.mode must be one of {FILTER_MODES}, got {self.mode!r}')
        if self.top_k < 1 or self.max_support < 1 or self.contradiction_frames < 1:
            raise ConfigError('filter.top_k, filter.max_support and filter.contradiction_frames '
                              f'must be >= 1, got {self.top_k}, {self.max_support}, '
                              f'{self.contradiction_frames}')
        if min(self.speed_mps, self.motion_noise, self.prior_sigma_m, self.heading_weight) < 0:
            raise ConfigError('filter.speed_mps, filter.motion_noise, filter.prior_sigma_m and '
                              'filter.heading_weight must be >= 0')
        if self.motion_sigma_m <= 0 or self.temperature <= 0 or self.prior_radius_sigmas <= 0:
            raise ConfigError('filter.motion_sigma_m, filter.temperature and '
                              'filter.prior_radius_sigmas must be > 0')
        if not 0.0 < self.floor <= 1.0:
            raise ConfigError(f'filter.floor must be in (0, 1], got {self.floor}')
        if not 0.0 < self.mixing < 1.0:
            raise ConfigError(f'filter.mixing must be in (0, 1), got {self.mixing}')
        if self.odom_max_age_s <= 0:
            raise ConfigError(f'filter.odom_max_age_s must be > 0, got {self.odom_max_age_s}')
        if not 0.0 <= self.min_belief <= 1.0:
            raise ConfigError(f'filter.min_belief must be in [0, 1], got {self.min_belief}')


@dataclass(frozen=True)
class RayBuildConfig:
    """Where and how ``build-map --executor ray`` runs (docs/scale.md)."""

    address: str = ''              # a running cluster; '': RAY_ADDRESS, else a local one
    workers: int = 0               # embedding actors; 0: the cluster's CPUs / worker_cpus
    worker_cpus: float = 1.0       # CPUs per actor, also its torch threads
    worker_gpus: float = 0.0       # GPUs per actor (workers with GPUs)
    object_store_mb: int = 1024    # object store of a local cluster (bounded, not 30 % of RAM)
    max_retries: int = 2           # a batch that raised is run again this many times

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.workers < 0 or self.max_retries < 0:
            raise ConfigError('ray.workers and ray.max_retries must be >= 0')
        if self.worker_cpus <= 0 or self.worker_gpus < 0:
            raise ConfigError(f'ray.worker_cpus must be > 0 and ray.worker_gpus >= 0, got '
                              f'{self.worker_cpus}, {self.worker_gpus}')
        if self.object_store_mb < 80:
            raise ConfigError('ray.object_store_mb must be >= 80 (the least Ray takes), got '
                              f'{self.object_store_mb}')
