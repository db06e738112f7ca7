"""How the backbone network is executed: torch, ONNX Runtime or OpenVINO, in fp32 or lower.

Modes: torch fp32 or bf16, ONNX Runtime fp32 or dynamic int8, OpenVINO fp32 or static int8.
ONNX files are exported once and cached (``export.py``). The name holds the weights fingerprint,
input size and descriptor, so a changed checkpoint or setting gets a new export, never a stale one.

Each mode's agreement with torch-fp32 is tested on a tiny model against ``MIN_COSINE``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from aesvc_vpr.backbone.calibration import calibration_set, CalibrationSet
from aesvc_vpr.backbone.runtime.export import build_once, export_onnx, onnx_dir, quantize_int8
from aesvc_vpr.backbone.runtime.openvino import OpenVinoRunner, quantize_static_int8
from aesvc_vpr.config import BackboneConfig
from aesvc_vpr.errors import BackboneError

log = logging.getLogger(__name__)

EXPORT_VERSION = 1        # bump when DescriptorNet or the export settings change the graph
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


ORT_SPINNING = 'session.intra_op.allow_spinning'


class OnnxRunner:
    """An ONNX Runtime CPU session over an exported DescriptorNet or a user's ONNX model."""

    def __init__(self, path: Path, output: str = '') -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        # Threads wait without spinning: beside other processes (a robot's), spinning threads
        # hold cores the others need; ViT-S/14 with 2 threads ran 1.3-1.7x faster without it at
        # load 6-11 on 2 cores, same outputs (bench_ort_spinning.py, benchmarks/README.md)
        options.add_session_config_entry(ORT_SPINNING, '0')
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=['CPUExecutionProvider'])
        except Exception as err:  # onnxruntime raises its own exception types
            raise BackboneError(f'{path}: ONNX Runtime cannot load it ({err}); delete the file '
                                'to export it again') from err
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = [output] if output else None   # None: all, of which the first is read

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Run one batch."""
        return self.session.run(self.outputs, {self.input_name: pixels})[0].astype(np.float32)


def make_runner(net: nn.Module, cfg: BackboneConfig, device: str, export_key: str,
                weights_files: Sequence[Path],
                preprocess: Callable[[list[np.ndarray]], np.ndarray],
                calibration: CalibrationSet | None = None) -> Runner:
    """Build the runner ``cfg.runtime`` names, exporting ONNX files unless cached.

    Args:
        net: DescriptorNet in eval mode on the cpu.
        export_key: weights fingerprint, input size and descriptor, as a file-name part.
        weights_files: where the weights came from; ONNX files are cached beside the first.
        preprocess: images -> network input, for openvino-int8's calibration images.
        calibration: openvino-int8's images when ``cfg.calibration_images`` is '' (the caller's
            default set; this layer renders nothing).

    Raises:
        BackboneError: an ONNX or OpenVINO mode for a model too large for one ONNX file, a
            failed export, or openvino-int8 without calibration images.
    """
    if cfg.runtime.startswith('torch'):
        return TorchRunner(net, device, bf16=cfg.runtime == 'torch-bf16')
    if sum(p.numel() * p.element_size() for p in net.parameters()) > ONNX_LIMIT_BYTES:
        raise BackboneError(f'backbone.runtime {cfg.runtime}: this model exceeds the 2 GB '
                            'single ONNX file limit; use torch-fp32 or torch-bf16')
    folder = onnx_dir(weights_files)
    fp32 = folder / f'dinov2-{export_key}-v{EXPORT_VERSION}.fp32.onnx'
    build_once(fp32, lambda tmp: export_onnx(net, tmp, cfg.input_size))
    if cfg.runtime == 'onnx-fp32':
        return OnnxRunner(fp32)
    if cfg.runtime == 'openvino-fp32':
        return OpenVinoRunner(fp32, torch.get_num_threads())
    if cfg.runtime == 'openvino-int8':
        calibration = calibration_set(cfg.calibration_images, calibration)
        xml = fp32.with_name(fp32.name.replace('.fp32.onnx', f'.int8-{calibration.tag}.xml'))
        build_once(xml, lambda tmp: quantize_static_int8(
            fp32, tmp, preprocess(calibration.images())), companions=('.bin',))
        return OpenVinoRunner(xml, torch.get_num_threads())
    int8 = fp32.with_name(fp32.name.replace('.fp32.onnx', '.int8.onnx'))
    build_once(int8, lambda tmp: quantize_int8(fp32, tmp))
    return OnnxRunner(int8)


def make_model_runner(path: Path, fingerprint: str, cfg: BackboneConfig, output: str,
                      quantised: bool, transformer: bool,
                      preprocess: Callable[[list[np.ndarray]], np.ndarray],
                      calibration: CalibrationSet | None = None) -> Runner:
    """Run a user's ONNX file with the runtime ``cfg.runtime`` names.

    torch-fp32 (the default) runs it in ONNX Runtime fp32. The int8 modes quantize a float
    model once (files cached like exports); a model that holds quantised operators already is
    run as it is, since quantizing it again would only lose accuracy.

    Args:
        path: the .onnx file.
        fingerprint: its sha256, which names the int8 files made from it.
        output: the output read ('' the first).
        quantised: the graph holds quantised operators.
        transformer: quantize with the transformer preset (attention) rather than a CNN's.
        preprocess: images -> model input, for openvino-int8's calibration images.
        calibration: openvino-int8's images when ``cfg.calibration_images`` is ''.

    Raises:
        BackboneError: torch-bf16 (an ONNX file has no torch graph), or a failed quantization.
    """
    if cfg.runtime == 'torch-bf16':
        raise BackboneError('backbone.runtime torch-bf16 cannot run an ONNX model; use '
                            'onnx-fp32, onnx-int8, openvino-fp32 or openvino-int8')
    threads = torch.get_num_threads()
    int8 = cfg.runtime.endswith('int8')
    if int8 and quantised:
        log.info('%s is quantised already: %s runs it as it is', path.name, cfg.runtime)
    if not int8 or quantised:
        try:
            if cfg.runtime.startswith('openvino'):
                return OpenVinoRunner(path, threads, output)
            return OnnxRunner(path, output)
        except BackboneError as err:   # the user's own file: never advise deleting it
            why = ' '.join(str(err.__cause__ or err).split())   # OpenVINO's reports: one line
            raise BackboneError(f'{path}: backbone.runtime {cfg.runtime} cannot run this model '
                                f'({why}); try another backbone.runtime') from err
    stem = f'onnx-{fingerprint[:16]}-v{EXPORT_VERSION}'
    folder = onnx_dir([path])
    if cfg.runtime == 'openvino-int8':
        calibration = calibration_set(cfg.calibration_images, calibration)
        xml = folder / f'{stem}.int8-{calibration.tag}.xml'
        build_once(xml, lambda tmp: quantize_static_int8(
            path, tmp, preprocess(calibration.images()), transformer), companions=('.bin',))
        return OpenVinoRunner(xml, threads, output)
    dynamic = folder / f'{stem}.int8.onnx'
    build_once(dynamic, lambda tmp: quantize_int8(path, tmp, ('MatMul', 'Conv')))
    return OnnxRunner(dynamic, output)
