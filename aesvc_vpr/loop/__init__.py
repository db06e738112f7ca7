"""Loop closure: keyframes, the detector, the geometric check and odometry.

Keyframes are searched with the index layer's PrefixIndex. Raises only LoopError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'LoopClosureDetector': 'detector', 'LoopClosure': 'detector', 'KeyframeStore': 'keyframes',
    'KeyframePolicy': 'keyframes', 'GeometricVerifier': 'geometric', 'OdometryTrack': 'odometry',
    'GeometricReranker': 'rerank',
})
