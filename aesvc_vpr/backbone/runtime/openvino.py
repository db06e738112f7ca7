"""OpenVINO CPU execution of the exported ONNX graph, in fp32 or in static int8.

On Intel CPUs OpenVINO fuses the ViT's attention and runs int8 layers on VNNI units, which made it
the fastest mode measured (benchmarks/README.md). Static int8 quantizes activations with ranges
measured on calibration images (NNCF, transformer preset with SmoothQuant), so no range is
computed per frame as ONNX Runtime's dynamic int8 does.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
import sys
import threading
from types import ModuleType

import numpy as np

from aesvc_vpr.errors import BackboneError


class OpenVinoRunner:
    """An OpenVINO model compiled for the CPU; callable from several threads at once.

    ``threads`` is what one call may use. Each share of the cores that size gets its own
    inference stream, so ``workers: 2`` with one thread each runs two frames side by side.
    """

    def __init__(self, path: Path, threads: int, output: str = '') -> None:
        """Read and compile the model (an ONNX file or OpenVINO IR .xml with its .bin).

        ``output`` names the output read ('' the first).

        Raises:
            BackboneError: OpenVINO cannot read or compile the file.
        """
        ov = import_openvino()
        threads = max(1, threads)
        streams = max(1, (os.cpu_count() or 1) // threads)
        self.path = path
        try:
            self.compiled = ov.Core().compile_model(str(path), 'CPU', {
                'NUM_STREAMS': streams, 'INFERENCE_NUM_THREADS': streams * threads,
                # fp32 where layers are not int8, also on CPUs whose default would be bf16
                'INFERENCE_PRECISION_HINT': 'f32'})
            self.port = self.compiled.output(output) if output else 0
        except RuntimeError as err:   # OpenVINO reports every read or compile failure so
            raise BackboneError(f'{path}: OpenVINO cannot load it ({err}); delete it to build '
                                'it again') from err
        self._local = threading.local()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Run one batch on this thread's own infer request."""
        request = getattr(self._local, 'request', None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        out = request.infer({0: pixels})[self.port]
        return np.array(out, dtype=np.float32)   # a copy: the request reuses its output buffer


def import_openvino() -> ModuleType:
    """Import OpenVINO with its usage statistics off for this process.

    ``import openvino`` sends an event to Google Analytics, and NNCF one per call, unless a
    consent file under ~/intel says no. Both use a silent stub when ``openvino_telemetry`` cannot
    be imported, so it is marked absent here: a robot does not phone home, and the user's own
    ~/intel setting is left alone.
    """
    sys.modules.setdefault('openvino_telemetry', None)   # type: ignore[arg-type]
    import openvino
    return openvino


def quantize_static_int8(src: Path, dst: Path, pixels: np.ndarray,
                         transformer: bool = True) -> None:
    """Write the int8 OpenVINO IR of an fp32 ONNX file (``dst`` .xml, and its .bin beside).

    Args:
        src: the fp32 ONNX file.
        dst: the .xml to write.
        pixels: (N, ...) pre-processed calibration images, as the model takes them.
        transformer: use NNCF's transformer preset (SmoothQuant); False for a CNN.
    """
    ov = import_openvino()   # first: it also keeps NNCF's usage statistics off
    import nncf
    model = ov.Core().read_model(str(src))
    samples = nncf.Dataset([pixels[i:i + 1] for i in range(len(pixels))])
    preset = {'model_type': nncf.ModelType.TRANSFORMER} if transformer else {}
    # NNCF draws its progress bars on stdout, where CLI commands and benchmarks print results
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(model, samples, subset_size=len(pixels), **preset)
    # fp16 weight compression is save_model's default; the fp32 layers must stay fp32
    ov.save_model(quantized, str(dst), compress_to_fp16=False)
