"""How the backbone network is executed: torch, ONNX Runtime or OpenVINO, in fp32 or lower.

Modes: torch fp32 or bf16, ONNX Runtime fp32 or dynamic int8, OpenVINO fp32 or static int8.
ONNX files are exported once and cached in ``aesvc_vpr_onnx/`` beside the weights file (or in
``<cache_root>/onnx`` when that folder is read-only or the weights have no file). The name holds
the weights fingerprint, input size and descriptor, so a changed checkpoint or setting gets a new
export and never a stale one. Writes are atomic: a killed export leaves no half file behind.

Each mode's agreement with torch-fp32 is tested on a tiny model against ``MIN_COSINE``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence
import warnings

import numpy as np
import torch
from torch import nn

from aesvc_vpr.calibration import calibration_set
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import ConfigError
from aesvc_vpr.fingerprints import cache_root
from aesvc_vpr.openvino_runner import OpenVinoRunner, quantize_static_int8

log = logging.getLogger(__name__)

EXPORT_VERSION = 1        # bump when DescriptorNet or the export settings change the graph
OPSET = 17
ONNX_LIMIT_BYTES = 2 << 30   # protobuf's single-file limit; ViT-g in fp32 is above it
# Minimum cosine of each mode's descriptors to torch-fp32 ones (tested on a tiny random model)
MIN_COSINE = {'torch-fp32': 1.0, 'torch-bf16': 0.99, 'onnx-fp32': 0.99999, 'onnx-int8': 0.99,
              'openvino-fp32': 0.99999, 'openvino-int8': 0.99}


class Runner(Protocol):
    """Normalised pixels (B, 3, S, S) float32 -> descriptors (B, D) float32."""

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Run one batch."""
        ...


class TorchRunner:
    """Eager torch in fp32, or under bf16 autocast (worth it only on CPUs with bf16 units)."""

    def __init__(self, net: nn.Module, device: str, bf16: bool) -> None:
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.bf16 = bf16

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Run one batch; the output is float32 whatever the compute precision."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.bf16):
            out = self.net(torch.from_numpy(pixels).to(self.device))
        return out.float().cpu().numpy()


class OnnxRunner:
    """An ONNX Runtime CPU session over an exported DescriptorNet."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=['CPUExecutionProvider'])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ConfigError(f'{path}: ONNX Runtime cannot load it ({err}); delete the file to '
                              'export it again') from err
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Run one batch."""
        return self.session.run(None, {self.input_name: pixels})[0].astype(np.float32)


def make_runner(net: nn.Module, cfg: BackboneConfig, device: str, export_key: str,
                weights_files: Sequence[Path],
                preprocess: Callable[[list[np.ndarray]], np.ndarray]) -> Runner:
    """Build the runner ``cfg.runtime`` names, exporting ONNX files unless cached.

    Args:
        net: DescriptorNet in eval mode on the cpu.
        export_key: weights fingerprint, input size and descriptor, as a file-name part.
        weights_files: where the weights came from; ONNX files are cached beside the first.
        preprocess: images -> network input, for openvino-int8's calibration images.

    Raises:
        ConfigError: an ONNX or OpenVINO mode for a model too large for one ONNX file, or a
            failed export.
    """
    if cfg.runtime.startswith('torch'):
        return TorchRunner(net, device, bf16=cfg.runtime == 'torch-bf16')
    if sum(p.numel() * p.element_size() for p in net.parameters()) > ONNX_LIMIT_BYTES:
        raise ConfigError(f'backbone.runtime {cfg.runtime}: this model exceeds the 2 GB single '
                          'ONNX file limit; use torch-fp32 or torch-bf16')
    folder = onnx_dir(weights_files)
    fp32 = folder / f'dinov2-{export_key}-v{EXPORT_VERSION}.fp32.onnx'
    build_once(fp32, lambda tmp: export_onnx(net, tmp, cfg.input_size))
    if cfg.runtime == 'onnx-fp32':
        return OnnxRunner(fp32)
    if cfg.runtime == 'openvino-fp32':
        return OpenVinoRunner(fp32, torch.get_num_threads())
    if cfg.runtime == 'openvino-int8':
        calibration = calibration_set(cfg.calibration_images)
        xml = fp32.with_name(fp32.name.replace('.fp32.onnx', f'.int8-{calibration.tag}.xml'))
        build_once(xml, lambda tmp: quantize_static_int8(
            fp32, tmp, preprocess(calibration.images())), companions=('.bin',))
        return OpenVinoRunner(xml, torch.get_num_threads())
    int8 = fp32.with_name(fp32.name.replace('.fp32.onnx', '.int8.onnx'))
    build_once(int8, lambda tmp: quantize_int8(fp32, tmp))
    return OnnxRunner(int8)


def onnx_dir(weights_files: Sequence[Path]) -> Path:
    """``aesvc_vpr_onnx/`` beside the weights if writable, else ``<cache_root>/onnx``."""
    if weights_files:
        beside = Path(weights_files[0]).resolve().parent / 'aesvc_vpr_onnx'
        try:
            beside.mkdir(exist_ok=True)
            if os.access(beside, os.W_OK):
                return beside
        except OSError:
            pass
    fallback = cache_root() / 'onnx'
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def export_onnx(net: nn.Module, path: Path, input_size: int) -> None:
    """Export a DescriptorNet with a dynamic batch axis (TorchScript exporter, opset 17)."""
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():
        # the tracer's notes on python-value conversions and the exporter's deprecation notice
        warnings.simplefilter('ignore')
        torch.onnx.export(net.cpu().eval(), (example,), str(path), dynamo=False,
                          opset_version=OPSET, input_names=['pixels'],
                          output_names=['descriptor'],
                          dynamic_axes={'pixels': {0: 'batch'}, 'descriptor': {0: 'batch'}})


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the MatMul weights, per output channel.

    Activations are quantized at run time, so no calibration images are needed. Per-channel
    weights kept the CLS cosine to fp32 highest (0.998 vs 0.997 per-tensor) at the same speed;
    reduce_range cost accuracy (0.988) for no gain on AVX2.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    root = logging.getLogger()
    # onnxruntime advises shape pre-processing on the root logger; our graph has static shapes
    # apart from the batch axis and the pre-processing measured no faster
    quiet = _DropRecords('pre-processing before quantization')
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=['MatMul'],
                         weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(quiet)


class _DropRecords(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 (logging's API)
        return self.text not in record.getMessage()


def build_once(path: Path, build: Callable[[Path], None], companions: Sequence[str] = ()) -> None:
    """Create ``path`` through a temporary file beside it unless it exists already.

    Args:
        path: the file to create.
        build: writes the given temporary path (and its companions).
        companions: suffixes of files ``build`` writes next to it (an IR's '.bin'); they are
            moved into place before ``path``, so ``path`` existing means all of them do.
    """
    if path.is_file():
        log.debug('using cached %s', path)
        return
    tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp{path.suffix}')
    log.info('writing %s (once per weights, size and descriptor)', path)
    try:
        build(tmp)
        for suffix in companions:
            os.replace(tmp.with_suffix(suffix), path.with_suffix(suffix))
        os.replace(tmp, path)
    except Exception as err:  # exporter and quantizer raise many types; all mean "no file"
        raise ConfigError(f'{path}: building it failed ({err}); use backbone.runtime '
                          'torch-fp32') from err
    finally:
        for leftover in (tmp, *(tmp.with_suffix(suffix) for suffix in companions)):
            leftover.unlink(missing_ok=True)
