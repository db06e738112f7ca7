"""Any ONNX image embedder as a backbone: MegaLoc, CosPlace, DINOv2 exports, MobileNet, ...

``backbone.model_name: onnx`` with ``backbone.weights: model.onnx``, or ``onnx:model.onnx``.
``backbone.onnx`` (OnnxConfig) says how images enter the model and how its output becomes one
vector. The backbone's name is ``onnx:`` plus the first 16 hex digits of the file's sha256, so
maps and head files name the model by content; as a model_name that form pins the file: the
configured weights must have that digest. The fingerprint covers the file and every setting
that changes the output (size, resize, channels, layout, scaling, output, pooling).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
import re
from typing import Sequence

import numpy as np

from aesvc_vpr.backbone.calibration import CalibrationSet
from aesvc_vpr.backbone.fingerprints import fingerprint
from aesvc_vpr.backbone.onnx_model import input_geometry, OnnxModel, pick_output, read_model
from aesvc_vpr.backbone.pixels import OnnxPixels
from aesvc_vpr.backbone.runtime.runners import make_model_runner
from aesvc_vpr.common.fileio import sha256_bytes
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import BackboneError

log = logging.getLogger(__name__)

NAME = 'onnx'
PIN = re.compile(r'[0-9a-f]{16}')
SETTINGS_VERSION = 1      # bump when pre-processing or pooling change for the same settings
GEM_EPS = 1e-6
NORM_TOLERANCE = 1e-2     # |norm - 1| an 'already normalised' output may show (fp16, int8)


def model_path(cfg: BackboneConfig) -> tuple[Path, str]:
    """Return the .onnx file and the digest prefix it must have ('' unpinned).

    ``onnx`` + weights, ``onnx:PATH``, or ``onnx:<16 hex digits>`` + weights (the name maps
    store).

    Raises:
        BackboneError: no file named, or a path in both model_name and weights.
    """
    rest = cfg.model_name[len(NAME) + 1:] if cfg.model_name.startswith(NAME + ':') else ''
    pin = rest if PIN.fullmatch(rest) else ''
    if rest and not pin:
        if cfg.weights and Path(cfg.weights) != Path(rest):
            raise BackboneError(f'backbone.model_name {cfg.model_name!r} names a file and '
                                f'backbone.weights names {cfg.weights!r}; give the file once')
        return Path(rest).expanduser(), ''
    if not cfg.weights:
        raise BackboneError(f'backbone.model_name {cfg.model_name!r} needs backbone.weights: '
                            'the .onnx file of the model (see docs/backbone.md)')
    return Path(cfg.weights).expanduser(), pin


class OnnxBackbone:
    """An ONNX image embedder run by ONNX Runtime or OpenVINO; implements ``Backbone``."""

    device = 'cpu'

    def __init__(self, cfg: BackboneConfig, path: Path, pin: str = '',
                 calibration: CalibrationSet | None = None) -> None:
        """Read the model, check it fits the configured input, and run one probe image.

        Args:
            cfg: runtime, batch size, gem_p and the ``onnx`` pre- and post-processing.
            path: the .onnx file.
            pin: digest prefix the file must have ('' any).
            calibration: openvino-int8's images when ``cfg.calibration_images`` is ''.

        Raises:
            BackboneError: missing file, another file than the pinned one, an input or output
                that does not fit; each message names the model's inputs and outputs.
        """
        if cfg.device != 'cpu':
            raise BackboneError(f'backbone.device {cfg.device}: ONNX models run on the cpu; '
                                'set backbone.device cpu')
        self.cfg = cfg
        self.model: OnnxModel = read_model(path)
        self.weights_fingerprint = fingerprint([path])
        if pin and not self.weights_fingerprint.startswith(pin):
            raise BackboneError(f'{path}: sha256 {self.weights_fingerprint[:16]} is not the '
                                f'model {cfg.model_name!r} names; set backbone.weights to the '
                                'file the map or head was made with')
        self.name = f'{NAME}:{self.weights_fingerprint[:16]}'
        onnx = cfg.onnx
        geometry = input_geometry(self.model, onnx, cfg.input_size)
        self.output = pick_output(self.model, onnx.output)
        self.pixels = OnnxPixels(onnx, geometry.height, geometry.width, geometry.dtype)
        self.step = 1 if geometry.batch == 1 else cfg.batch_size
        settings = {'model': self.weights_fingerprint, 'size': [geometry.height, geometry.width],
                    'resize': onnx.resize, 'channels': onnx.channels, 'layout': onnx.layout,
                    'scaling': list(onnx.scaling()), 'output': self.output.name,
                    'pooling': onnx.pooling, 'version': SETTINGS_VERSION}
        if onnx.pooling == 'gem':
            settings['gem_p'] = cfg.gem_p
        self.fingerprint = sha256_bytes(json.dumps(settings, sort_keys=True).encode())
        transformer = 'Softmax' in self.model.op_types and 'MatMul' in self.model.op_types
        self.runner = make_model_runner(path, self.weights_fingerprint, cfg, self.output.name,
                                        self.model.quantised, transformer, self.pixels,
                                        calibration)
        probe = self.embed([_probe_image(geometry.height, geometry.width)])
        self.dim = probe.shape[1]
        if onnx.normalised:
            norm = float(np.linalg.norm(probe[0]))
            if abs(norm - 1.0) > NORM_TOLERANCE:
                raise BackboneError(f'{path} ({self.model.describe()}): output '
                                    f'{self.output.name} has norm {norm:.3g}, not 1; set '
                                    'backbone.onnx.normalised false, or backbone.onnx.output to '
                                    'the normalised descriptor')
        log.info('backbone %s (%s): %d-d from %s at %dx%d, %s%s, runtime %s', self.name,
                 path.name, self.dim, self.output.name, geometry.height, geometry.width,
                 onnx.preset, ', quantised model' if self.model.quantised else '', cfg.runtime)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed images in batches (one at a time for a model with a fixed batch of 1).

        Returns:
            (N, dim) float32, pooled as configured, not normalised by us.

        Raises:
            ImageError: an unusable image; BackboneError: the model fails or its output does
                not fit.
        """
        parts = []
        for start in range(0, len(images), self.step):
            batch = self.pixels(images[start:start + self.step])
            try:
                out = self.runner(batch)
            except BackboneError:
                raise
            except Exception as err:  # ONNX Runtime and OpenVINO raise their own types
                raise BackboneError(
                    f'{self.model.path} ({self.model.describe()}): running it on '
                    f'{batch.dtype}{list(batch.shape)} failed ({err}); check '
                    'backbone.onnx.layout and backbone.onnx.input_size') from err
            parts.append(self.pool(out, len(batch)))
        if not parts:
            return np.empty((0, getattr(self, 'dim', 0)), np.float32)
        return np.concatenate(parts)

    def pool(self, out: np.ndarray, count: int) -> np.ndarray:
        """Turn the model's output into (count, D) float32 vectors as backbone.onnx.pooling says.

        Raises:
            BackboneError: the output's rank does not fit the pooling.
        """
        pooling, layout = self.cfg.onnx.pooling, self.cfg.onnx.layout
        if out.ndim < 2 or out.shape[0] != count:
            raise self._refusal(out, 'its first axis is not the batch')
        if pooling == 'none':
            # (B, D, 1, 1) and alike -> (B, D): singleton axes of a pooled map
            flat = out.reshape(count, -1) if sum(d > 1 for d in out.shape[1:]) <= 1 else None
            if flat is None:
                raise self._refusal(out, 'it is not one vector per image; set '
                                    'backbone.onnx.pooling avg or gem')
            return np.ascontiguousarray(flat, np.float32)
        if out.ndim == 4:   # a spatial map: (B, C, H, W) for nchw, (B, H, W, C) for nhwc
            axes: tuple[int, ...] = (2, 3) if layout == 'nchw' else (1, 2)
        elif out.ndim == 3:   # tokens: (B, T, C)
            axes = (1,)
        else:
            raise self._refusal(out, f'backbone.onnx.pooling {pooling} needs a rank 3 (tokens) '
                                'or rank 4 (map) output; set backbone.onnx.pooling none')
        if pooling == 'avg':
            return out.mean(axis=axes).astype(np.float32)
        p = self.cfg.gem_p
        gem = np.power(np.maximum(out, GEM_EPS), p).mean(axis=axes)
        return np.power(gem, 1.0 / p).astype(np.float32)

    def _refusal(self, out: np.ndarray, why: str) -> BackboneError:
        return BackboneError(f'{self.model.path} ({self.model.describe()}): output '
                             f'{self.output.name} gives shape {list(out.shape)}, and {why}; '
                             'or set backbone.onnx.output to another output')


def _probe_image(height: int, width: int) -> np.ndarray:
    """Return a smooth colour ramp, run at load to check the model and learn its output size."""
    ys, xs = np.mgrid[0:height, 0:width]
    ramp = np.stack([xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1),
                     (xs + ys) * 255 // max(1, height + width - 2)], axis=2)
    return ramp.astype(np.uint8)
