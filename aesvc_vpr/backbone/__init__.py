"""Image encoders: the Backbone protocol, ``load_backbone`` and everything behind it.

DINOv2 and its weights, the weights-free patchgrid baseline, any ONNX image embedder
(``onnx_backbone``), and the runtimes (torch, ONNX, OpenVINO). Raises only BackboneError
(WeightsError for weights). Calibration images are passed in: this layer knows nothing of
datasets, maps or bags.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'Backbone': 'protocol', 'load_backbone': 'registry', 'register_backbone': 'registry',
    'backbone_names': 'registry', 'DinoV2Backbone': 'dinov2', 'PatchGridBackbone': 'patchgrid',
    'embed_paths': 'feed', 'CalibrationSet': 'calibration', 'calibration_set': 'calibration',
    'find_weights': 'weights', 'load_weights': 'weights', 'random_weights': 'weights',
    'Dinov2Weights': 'weights', 'resolve_model_name': 'dinov2_archs',
    'OnnxBackbone': 'onnx_backbone', 'read_model': 'onnx_model', 'OnnxModel': 'onnx_model',
    'resize_rgb': 'pixels',
})
