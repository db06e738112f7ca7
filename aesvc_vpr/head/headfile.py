"""Head files: one ``.safetensors`` file holding the weights and, in its header, the JSON metadata.

The metadata is a JSON object under the key ``aesvc_vpr.head`` of the safetensors
``__metadata__`` map, so weights and metadata can never be separated or half-updated; the file
is written to a temporary file in the same directory and renamed over the target. The head
fingerprint is the sha256 of the whole file (weights + metadata). See docs/head.md for the fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
import hashlib
import json
import math
import os
from pathlib import Path
import struct
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
import torch

from aesvc_vpr.common.fileio import atomic_write
from aesvc_vpr.common.provenance import versions
from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import ConfigError, HeadError
from aesvc_vpr.head.networks import AESVCAutoencoder, SS2DStudent

FORMAT = 'aesvc_vpr.head'
FORMAT_VERSION = 2          # 2: head.decoder_shortcut; version 1 files still load
READABLE_VERSIONS = (1, 2)
META_KEY = 'aesvc_vpr.head'
STD_FLOOR = 1e-6     # a constant input dimension is divided by this instead of 0


@dataclass(frozen=True)
class Standardisation:
    """Per-dimension z-scoring of backbone embeddings, fitted on the training data."""

    mean: np.ndarray   # (D,) float32
    std: np.ndarray    # (D,) float32, >= STD_FLOOR

    @classmethod
    def fit(cls, raw: np.ndarray, per_dimension: bool = False) -> Standardisation:
        """Fit on (N, D) raw embeddings (float64 accumulation, stored as float32).

        Args:
            raw: the training rows.
            per_dimension: z-score each dimension; the default divides every dimension by one
                scale (the RMS of the centred rows), which keeps the principal axes of the raw
                embeddings, so the head's whitening start equals the PCA-whitening baseline.
        """
        data = np.asarray(raw, dtype=np.float64)
        mean = data.mean(axis=0)
        if per_dimension:
            std = np.maximum(data.std(axis=0), STD_FLOOR)
        else:
            rms = float(np.sqrt(((data - mean) ** 2).mean()))
            std = np.full(data.shape[1], max(rms, STD_FLOOR))
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """(N, D) raw -> (N, D) float32 standardised."""
        return ((np.asarray(raw, dtype=np.float32) - self.mean) / self.std).astype(np.float32)


@dataclass(frozen=True)
class DataFingerprint:
    """What the head was trained on: row count, width, dtype and sha256 of the C-order bytes."""

    count: int
    dim: int
    dtype: str
    sha256: str

    @classmethod
    def of(cls, raw: np.ndarray) -> DataFingerprint:
        """Fingerprint an (N, D) array exactly as given (dtype included)."""
        data = np.ascontiguousarray(raw)
        return cls(int(data.shape[0]), int(data.shape[1]), str(data.dtype),
                   hashlib.sha256(data.tobytes()).hexdigest())


@dataclass(frozen=True)
class HeadMeta:
    """Everything a head file records besides the weights."""

    backbone_name: str
    input_dim: int
    head: HeadConfig           # hidden_dim is stored resolved (never 0)
    train: TrainConfig         # loss weights, tau, size weights and optimisation settings
    standardisation: Standardisation
    training_data: DataFingerprint
    report: dict[str, float] = field(default_factory=dict)   # final validation loss terms
    created_utc: str = ''
    package_version: str = ''
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """Serialise; arrays become lists of floats (float32 values round-trip exactly)."""
        doc = {
            'format': FORMAT, 'format_version': self.format_version,
            'backbone': {'name': self.backbone_name, 'input_dim': self.input_dim},
            'head': asdict(self.head), 'train': asdict(self.train),
            'standardisation': {'kind': 'centre, then divide by std',
                                'mean': [float(v) for v in self.standardisation.mean],
                                'std': [float(v) for v in self.standardisation.std]},
            'training_data': asdict(self.training_data), 'report': self.report,
            'created_utc': self.created_utc, 'package_version': self.package_version,
        }
        return json.dumps(doc, allow_nan=False)


@dataclass
class HeadFile:
    """A loaded and validated head: metadata, both networks (eval mode) and the fingerprint."""

    meta: HeadMeta
    autoencoder: AESVCAutoencoder
    student: SS2DStudent
    fingerprint: str
    path: Path


def package_version() -> str:
    """Installed aesvc_vpr version, or 'unknown' when run from an uninstalled source tree."""
    return versions(('aesvc_vpr',)).get('aesvc_vpr', 'unknown')


def now_utc() -> str:
    """ISO 8601 UTC timestamp, second resolution."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def save_head(path: str | os.PathLike[str], meta: HeadMeta, autoencoder: AESVCAutoencoder,
              student: SS2DStudent) -> str:
    """Write a head file atomically.

    Returns:
        The fingerprint (sha256 hex of the written file).

    Raises:
        HeadError: the file cannot be written.
    """
    path = Path(path)
    tensors = {f'autoencoder.{k}': v.detach().cpu().contiguous()
               for k, v in autoencoder.state_dict().items()}
    tensors.update({f'student.{k}': v.detach().cpu().contiguous()
                    for k, v in student.state_dict().items()})
    data = save_safetensors(tensors, metadata={META_KEY: meta.to_json()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(data)
    except OSError as err:
        raise HeadError(f'{path}: cannot write head file ({err})') from err
    return hashlib.sha256(data).hexdigest()


def load_head(path: str | os.PathLike[str], backbone_name: str | None = None,
              input_dim: int | None = None) -> HeadFile:
    """Read and validate a head file; optionally check it fits a backbone.

    Args:
        path: the ``.safetensors`` head file.
        backbone_name: if given, must equal the name the head was trained for.
        input_dim: if given, must equal the head's input (backbone) dimension.

    Raises:
        HeadError: missing, truncated or corrupt file, invalid metadata, weights that do not fit
            the metadata, or a backbone name/dimension mismatch (the message names both).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise HeadError(f'{path}: cannot read head file ({err}); train one with '
                        '`aesvc-vpr train-head`') from err
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise HeadError(f'{path}: not a valid safetensors file, truncated or corrupt ({err})') \
            from err
    meta = _parse_meta(path, _header_metadata(path, data))
    where = f'{path}: head trained for backbone {meta.backbone_name!r} ({meta.input_dim}-d)'
    if input_dim is not None and input_dim != meta.input_dim:
        raise HeadError(f'{where} cannot take {input_dim}-d embeddings: the head expects input '
                        f'dimension {meta.input_dim}, the backbone gives {input_dim}; train a '
                        'head for this backbone')
    if backbone_name is not None and backbone_name != meta.backbone_name:
        raise HeadError(f'{where} does not fit backbone {backbone_name!r}; train a head for '
                        f'{backbone_name!r} or select backbone {meta.backbone_name!r}')
    unknown = sorted(k for k in tensors if not k.startswith(('autoencoder.', 'student.')))
    if unknown:
        raise HeadError(f'{path}: unexpected tensors {unknown[:3]} in head file')
    autoencoder = AESVCAutoencoder(meta.input_dim, meta.head)
    student = SS2DStudent(meta.input_dim, meta.head)
    for prefix, module in (('autoencoder.', autoencoder), ('student.', student)):
        _load_module(path, module, prefix, tensors)
        module.eval()
    return HeadFile(meta, autoencoder, student, hashlib.sha256(data).hexdigest(), path)


def _header_metadata(path: Path, data: bytes) -> dict[str, Any]:
    # safetensors layout: u64 little-endian header length, then the JSON header
    (length,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + length])
    raw = (header.get('__metadata__') or {}).get(META_KEY)
    if raw is None:
        raise HeadError(f'{path}: safetensors file has no {META_KEY!r} metadata; it is not an '
                        'aesvc_vpr head file')
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        raise HeadError(f'{path}: metadata is not valid JSON ({err})') from err
    if not isinstance(doc, dict):
        raise HeadError(f'{path}: metadata must be a JSON object')
    return doc


def _get(path: Path, doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise HeadError(f'{path}: metadata field {key!r} is missing or not of type '
                        f'{getattr(kind, "__name__", kind)} (got {value!r:.60})')
    return value


def _parse_meta(path: Path, doc: dict[str, Any]) -> HeadMeta:
    if doc.get('format') != FORMAT:
        raise HeadError(f'{path}: metadata format {doc.get("format")!r} is not {FORMAT!r}')
    version = _get(path, doc, 'format_version', int)
    if version not in READABLE_VERSIONS:
        raise HeadError(f'{path}: head format version {version} is not supported (this '
                        f'aesvc_vpr reads versions {READABLE_VERSIONS}); retrain the head')
    backbone = _get(path, doc, 'backbone', dict)
    name = _get(path, backbone, 'name', str)
    input_dim = _get(path, backbone, 'input_dim', int)
    if not name or input_dim < 1:
        raise HeadError(f'{path}: backbone name must be non-empty and input_dim >= 1')
    try:
        # a file written before these fields existed has networks without the linear paths
        legacy = {'shortcut': 0, 'decoder_shortcut': 0}
        head = HeadConfig(**{**legacy, **_get(path, doc, 'head', dict)})
        train = TrainConfig(**_get(path, doc, 'train', dict))
    except (ConfigError, TypeError) as err:
        raise HeadError(f'{path}: invalid head/train settings in metadata ({err})') from err
    if head.hidden_dim < 1:
        raise HeadError(f'{path}: metadata head.hidden_dim must be the resolved width (>= 1)')
    stats = _get(path, doc, 'standardisation', dict)
    mean = np.asarray(_get(path, stats, 'mean', list), dtype=np.float32)
    std = np.asarray(_get(path, stats, 'std', list), dtype=np.float32)
    if mean.shape != (input_dim,) or std.shape != (input_dim,):
        raise HeadError(f'{path}: standardisation has {mean.size} means and {std.size} stds, '
                        f'expected {input_dim} each')
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise HeadError(f'{path}: standardisation must be finite with std > 0')
    data = _get(path, doc, 'training_data', dict)
    fingerprint = DataFingerprint(_get(path, data, 'count', int), _get(path, data, 'dim', int),
                                  _get(path, data, 'dtype', str), _get(path, data, 'sha256', str))
    if fingerprint.dim != input_dim or len(fingerprint.sha256) != 64:
        raise HeadError(f'{path}: training_data must be {input_dim}-d with a sha256 hex digest')
    report = _get(path, doc, 'report', dict)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in report.values()):
        raise HeadError(f'{path}: report values must be finite numbers')
    return HeadMeta(name, input_dim, head, train, Standardisation(mean, std), fingerprint,
                    report, _get(path, doc, 'created_utc', str),
                    _get(path, doc, 'package_version', str), version)


def _load_module(path: Path, module: torch.nn.Module, prefix: str,
                 tensors: dict[str, torch.Tensor]) -> None:
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise HeadError(f'{path}: {prefix.rstrip(".")} weights do not fit the metadata '
                        f'({str(err).splitlines()[0]}...); the file is corrupt or was edited') \
            from err
    for name, value in module.state_dict().items():
        if not torch.isfinite(value).all():
            raise HeadError(f'{path}: weight {prefix}{name} holds NaN or inf')
