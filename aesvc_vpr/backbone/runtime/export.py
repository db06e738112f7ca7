"""Exporting the backbone network to ONNX and quantizing it, each file built once and cached.

ONNX files are cached in ``aesvc_vpr_onnx/`` beside the weights file (or in ``<cache_root>/onnx``
when that folder is read-only or the weights have no file). Writes go through a temporary file:
a killed export leaves no half file behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence
import warnings

import torch
from torch import nn

from aesvc_vpr.backbone.fingerprints import cache_root
from aesvc_vpr.errors import BackboneError

log = logging.getLogger(__name__)

OPSET = 17


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


def quantize_int8(src: Path, dst: Path, op_types: Sequence[str] = ('MatMul',)) -> None:
    """Dynamic int8 quantization of the weights of ``op_types``, per output channel.

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
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(op_types),
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
        raise BackboneError(f'{path}: building it failed ({err}); use backbone.runtime '
                            'torch-fp32') from err
    finally:
        for leftover in (tmp, *(tmp.with_suffix(suffix) for suffix in companions)):
            leftover.unlink(missing_ok=True)
