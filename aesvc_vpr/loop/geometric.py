"""Geometric verification of a loop candidate: whether two images share one rigid 3-D scene.

Appearance alone confuses look-alike places (perceptual aliasing). Local features (ORB or SIFT)
matched with Lowe's ratio test, then an essential matrix fitted by RANSAC, count the matches a
single camera motion explains; a real revisit gives many such inliers, a look-alike gives few.
Images are kept as small grayscale thumbnails in a bounded ring, so memory stays fixed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from aesvc_vpr.errors import LoopError
from aesvc_vpr.images.rgb import as_rgb_uint8

NOMINAL_FOCAL = 1.2      # focal length / long image side when the camera is unknown (~45 deg FOV)
MIN_MATCHES = 8          # fewer ratio-test matches than this cannot support a reliable fit


@dataclass(frozen=True)
class Thumbnail:
    """A grayscale image shrunk for verification, with its focal length in its own pixels."""

    gray: np.ndarray     # (h, w) uint8
    focal_px: float

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data."""
        return self.gray.nbytes


def make_thumbnail(image: np.ndarray, side: int, focal_px: float = 0.0) -> Thumbnail:
    """Shrink an image so its long side is at most ``side`` pixels, as grayscale.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) grayscale.
        side: long side of the result, pixels (never enlarged).
        focal_px: focal length in the pixels of ``image``; 0 assumes a nominal pinhole camera
            with focal = 1.2 * long side.
    """
    rgb = as_rgb_uint8(image)
    scale = min(1.0, side / max(rgb.shape[:2]))
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    gray = cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    focal = focal_px * scale if focal_px > 0 else NOMINAL_FOCAL * max(gray.shape)
    return Thumbnail(gray, float(focal))


class ThumbnailRing:
    """The newest ``size`` keyframe thumbnails by keyframe index; older ones are dropped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, Thumbnail] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data held."""
        return sum(t.nbytes for t in self._items.values())

    def put(self, index: int, thumbnail: Thumbnail) -> None:
        """Store a keyframe's thumbnail, evicting the oldest beyond ``size``."""
        self._items[index] = thumbnail
        self.resize(self.size)

    def get(self, index: int) -> Thumbnail | None:
        """Return keyframe ``index``'s thumbnail, or None if it was never stored or was evicted."""
        return self._items.get(index)

    def resize(self, size: int) -> None:
        """Change the capacity, evicting the oldest entries if needed."""
        self.size = size
        while len(self._items) > size:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class Features:
    """Keypoints in normalised camera coordinates ((x - c) / f) and their descriptors."""

    points: np.ndarray        # (N, 2) float64
    descriptors: np.ndarray   # (N, 32) uint8 for ORB, (N, 128) float32 for SIFT
    focal_px: float


class GeometricVerifier:
    """Counts essential-matrix RANSAC inliers between two thumbnails (ORB or SIFT features)."""

    def __init__(self, method: str = 'orb', max_features: int = 1000, ratio: float = 0.75,
                 ransac_px: float = 1.0) -> None:
        """Set up the feature detector and matcher.

        Args:
            method: 'orb' (binary, fast) or 'sift' (float, more robust to scale).
            max_features: keypoints kept per image.
            ratio: Lowe's ratio test threshold.
            ransac_px: RANSAC inlier threshold, pixels.

        Raises:
            LoopError: unknown method.
        """
        if method == 'orb':
            self._detector = cv2.ORB_create(nfeatures=max_features)
            norm = cv2.NORM_HAMMING
        elif method == 'sift':
            self._detector = cv2.SIFT_create(nfeatures=max_features)
            norm = cv2.NORM_L2
        else:
            raise LoopError(f'geometric check method must be orb or sift, got {method!r}')
        self.method = method
        self._matcher = cv2.BFMatcher(norm)
        self.ratio = ratio
        self.ransac_px = ransac_px

    def features(self, thumbnail: Thumbnail) -> Features:
        """Detect and describe keypoints once per image, so several candidates can reuse them."""
        keypoints, descriptors = self._detector.detectAndCompute(thumbnail.gray, None)
        if descriptors is None:
            return Features(np.empty((0, 2)), np.empty((0, 0)), thumbnail.focal_px)
        h, w = thumbnail.gray.shape
        xy = np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2)
        points = (xy - ((w - 1) / 2.0, (h - 1) / 2.0)) / thumbnail.focal_px
        return Features(points, descriptors, thumbnail.focal_px)

    def inliers(self, a: Features, b: Features) -> int:
        """Count the ratio-test matches consistent with one essential matrix (0 if too few)."""
        if len(a.points) < 2 or len(b.points) < 2:
            return 0
        pairs = self._matcher.knnMatch(a.descriptors, b.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) < MIN_MATCHES:
            return 0
        pa = a.points[[m.queryIdx for m in good]]
        pb = b.points[[m.trainIdx for m in good]]
        # points are already normalised, so the camera matrix is the identity and the pixel
        # threshold is expressed in normalised units
        threshold = self.ransac_px * 2.0 / (a.focal_px + b.focal_px)
        try:
            essential, mask = cv2.findEssentialMat(pa, pb, np.eye(3), method=cv2.RANSAC,
                                                   prob=0.999, threshold=threshold)
        except cv2.error:
            # OpenCV 5 raises on a degenerate sample (e.g. nearly coplanar or repeated points)
            # where 4.x returned no model: either way no geometry verifies the pair
            return 0
        if essential is None or mask is None:
            return 0
        return int(np.count_nonzero(mask))
