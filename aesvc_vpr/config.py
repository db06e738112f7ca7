"""Frozen configuration dataclasses: CLI flags, ROS parameters and files all end up as these.

Each component takes its own dataclass. ``__post_init__`` validates, so ``dataclasses.replace``
re-checks a changed value (the node relies on this to refuse bad ``ros2 param set`` calls).
"""

from __future__ import annotations

from dataclasses import dataclass

from aesvc_vpr.errors import ConfigError

DESCRIPTORS = ('cls', 'gem', 'cls+gem')
RUNTIMES = ('torch-fp32', 'torch-bf16', 'onnx-fp32', 'onnx-int8', 'openvino-fp32',
            'openvino-int8')
DEFAULT_PREFIX_SIZES = (8, 16, 32, 64, 128, 256)


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

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
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
class HeadConfig:
    """Shape of the AE-SVC autoencoder and the (SS)2D student."""

    latent_dim: int = 256
    hidden_dim: int = 0            # 0: halfway between input and latent sizes
    prefix_sizes: tuple[int, ...] = DEFAULT_PREFIX_SIZES
    shortcut: int = 0              # 1: encoder and student add a linear input->output path

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        sizes = tuple(self.prefix_sizes)
        if self.latent_dim < 1:
            raise ConfigError(f'head.latent_dim must be >= 1, got {self.latent_dim}')
        if self.shortcut not in (0, 1):
            raise ConfigError(f'head.shortcut must be 0 or 1, got {self.shortcut}')
        if not sizes or list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
            raise ConfigError(f'head.prefix_sizes must be increasing positive sizes, got {sizes}')
        if sizes[-1] > self.latent_dim:
            raise ConfigError(
                f'head.prefix_sizes max {sizes[-1]} exceeds head.latent_dim {self.latent_dim}')
        object.__setattr__(self, 'prefix_sizes', sizes)


@dataclass(frozen=True)
class TrainConfig:
    """Loss weights and optimisation settings; the [U] items of PAPER.md are options here."""

    w_rec: float = 25.0
    w_cov: float = 1.0
    w_var: float = 15.0
    w_mean: float = 1.0
    tau: float = 0.1
    tau_size_exponent: float = 0.0  # prefix d distils at tau * (d_teacher / d) ** this
    size_weights: tuple[float, ...] = ()   # one per prefix size; empty means equal weights
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    val_fraction: float = 0.1
    patience: int = 8              # epochs without validation improvement before stopping
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
        if self.epochs < 1 or self.batch_size < 2 or self.patience < 1:
            raise ConfigError('train.epochs >= 1, train.batch_size >= 2 and train.patience >= 1 '
                              'are required')
        if min(self.w_rec, self.w_cov, self.w_var, self.w_mean) < 0 or self.lr <= 0:
            raise ConfigError('train loss weights must be >= 0 and train.lr > 0')
        object.__setattr__(self, 'size_weights', tuple(float(w) for w in self.size_weights))


@dataclass(frozen=True)
class SearchConfig:
    """How the map is searched."""

    prefix_dim: int = 64           # leading embedding dimensions used for search
    index_type: str = 'flat'       # flat (exact) | ivf | hnsw
    threads: int = 0               # FAISS threads; 0: 1 for single queries, all cores for batches

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.prefix_dim < 1:
            raise ConfigError(f'search.prefix_dim must be >= 1, got {self.prefix_dim}')
        if self.index_type not in ('flat', 'ivf', 'hnsw'):
            raise ConfigError('search.index_type must be flat, ivf or hnsw, '
                              f'got {self.index_type!r}')
        if self.threads < 0:
            raise ConfigError(f'search.threads must be >= 0, got {self.threads}')


@dataclass(frozen=True)
class MatchConfig:
    """What counts as a match, and what is reported."""

    top_k: int = 5                 # candidates taken from the index
    min_score: float = 0.0         # best match published only at or above this cosine
    radius_m: float = 25.0         # a retrieved place within this distance counts as correct

    def __post_init__(self) -> None:
        """Validate, so that dataclasses.replace re-checks every change."""
        if self.top_k < 1:
            raise ConfigError(f'match.top_k must be >= 1, got {self.top_k}')
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
