"""How a backbone network runs: torch, ONNX Runtime or OpenVINO, exported and cached once."""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'make_runner': 'runners', 'Runner': 'runners', 'MIN_COSINE': 'runners',
    'build_once': 'export', 'onnx_dir': 'export', 'OpenVinoRunner': 'openvino',
})
