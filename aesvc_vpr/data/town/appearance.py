"""How the query run differs from the survey: light, weather, sensor, clutter, lane and heading.

One knob, ``difficulty`` (0 = the survey's own conditions, 1 = hard), scales every change:
time of day (brightness, colour temperature and sun direction), fog and contrast loss, sensor
noise, occasional occluders (vehicles, poles, pedestrians, trees), another lane and heading
jitter. Conditions drift slowly along the run, as light and weather do, instead of flickering.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from aesvc_vpr.data.town.render import Frame
from aesvc_vpr.data.town.routes import Poses
from aesvc_vpr.errors import DatasetError

SURVEY_SUN_RAD = 0.6           # sun azimuth of the survey day (ENU angle)
LANE_WIDTH_M = 3.4             # a lane change moves the car this far at difficulty 1


@dataclass(frozen=True)
class Condition:
    """The light, weather and sensor of one frame."""

    gain: float = 1.0                                      # exposure x scene brightness
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)   # RGB multipliers
    sun_azimuth_rad: float = SURVEY_SUN_RAD                # passed to the renderer's shading
    fog_m: float = float('inf')        # distance where fog hides 63 % (1 - 1/e) of the scene
    fog_rgb: tuple[float, float, float] = (0.74, 0.76, 0.79)
    contrast: float = 1.0              # < 1 pulls colours towards the frame mean
    noise_sigma: float = 1.5           # Gaussian sensor noise, 0..255 units
    occluder_rate: float = 0.08        # chance of a foreground occluder in the frame

    def __post_init__(self) -> None:
        """Reject values that cannot make a sensible town or image."""
        if self.gain <= 0 or self.fog_m <= 0 or not 0 < self.contrast <= 1.5:
            raise DatasetError(f'condition needs gain > 0, fog_m > 0, 0 < contrast <= 1.5: {self}')


SURVEY = Condition()


def check_difficulty(difficulty: float) -> float:
    """Validate the difficulty knob (0 .. 2; 1 is hard)."""
    if not 0.0 <= difficulty <= 2.0:
        raise DatasetError(f'town difficulty must be in [0, 2], got {difficulty}')
    return float(difficulty)


def query_conditions(count: int, difficulty: float, rng: np.random.Generator) -> list[Condition]:
    """Conditions for each frame of the query run, drifting slowly along it."""
    d = check_difficulty(difficulty)
    frames = np.arange(count)

    def drift(period: float) -> np.ndarray:      # a slow wave in [0, 1] with a random phase
        return 0.5 + 0.5 * np.sin(2 * np.pi * frames / period + rng.uniform(0, 2 * np.pi))

    dusk = np.clip(d * (0.45 + 0.55 * drift(230.0)), 0.0, 1.0)        # 0 noon .. 1 dusk
    warm = 1.0 if rng.random() < 0.6 else -1.0                         # sunset or overcast
    haze = np.clip(d * drift(170.0), 0.0, 2.0)
    sun = SURVEY_SUN_RAD + d * rng.uniform(0.5, 1.0) * np.pi * rng.choice([-1.0, 1.0])
    out = []
    for i in range(count):
        k = float(dusk[i])
        out.append(Condition(
            gain=1.0 - 0.55 * k,
            white_balance=(1.0 + 0.22 * k * warm, 1.0, 1.0 - 0.28 * k * warm),
            sun_azimuth_rad=float(sun),
            fog_m=40.0 / float(haze[i]) if haze[i] > 1e-3 else float('inf'),
            contrast=float(1.0 - 0.35 * haze[i] / 2.0),
            noise_sigma=1.5 + 9.0 * d,
            occluder_rate=min(0.9, 0.08 + 0.45 * d)))
    return out


def apply_condition(frame: Frame, condition: Condition,
                    rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Turn a rendered frame into a camera image under a condition.

    Args:
        frame: the renderer's output (colour and depth).
        condition: light, weather and sensor of this frame.
        rng: this frame's own random stream (noise and occluders).

    Returns:
        (H, W, 3) uint8 RGB, and whether an occluder was painted.
    """
    img = frame.rgb.copy()
    if np.isfinite(condition.fog_m):
        keep = np.exp(-frame.depth_m / np.float32(condition.fog_m))[:, :, None]   # sky: 0
        img = img * keep + np.asarray(condition.fog_rgb, np.float32) * (1.0 - keep)
    occluded = bool(rng.random() < condition.occluder_rate)
    if occluded:
        for _ in range(int(rng.integers(1, 3))):
            _occluder(img, rng)
    img *= np.asarray(condition.white_balance, np.float32) * np.float32(condition.gain)
    if condition.contrast != 1.0:
        mean = img.mean(axis=(0, 1), keepdims=True)
        img = mean + (img - mean) * np.float32(condition.contrast)
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= np.float32(condition.noise_sigma)
    noise += img * np.float32(255.0) + np.float32(0.5)
    return np.clip(noise, 0, 255, out=noise).astype(np.uint8), occluded


def _occluder(img: np.ndarray, rng: np.random.Generator) -> None:
    """Paint one foreground object (float RGB image, in place)."""
    h, w = img.shape[:2]
    colour = tuple(float(c) for c in rng.uniform(0.05, 0.9, 3))
    kind = rng.integers(4)
    x = int(rng.integers(0, w))
    if kind == 0:          # a vehicle: body, windows and wheels
        bw, bh = int(w * rng.uniform(0.25, 0.55)), int(h * rng.uniform(0.14, 0.26))
        top = int(h * rng.uniform(0.52, 0.66))
        cv2.rectangle(img, (x - bw // 2, top), (x + bw // 2, top + bh), colour, -1)
        cv2.rectangle(img, (x - bw // 3, top - bh // 2), (x + bw // 3, top), colour, -1)
        cv2.rectangle(img, (x - bw // 4, top - bh // 2 + 3), (x + bw // 4, top - 1),
                      (0.12, 0.14, 0.18), -1)
        for side in (-1, 1):
            cv2.circle(img, (x + side * bw // 3, top + bh), max(2, bh // 4), (0.05,) * 3, -1)
    elif kind == 1:        # a lamp post or sign pole
        pw = max(2, int(w * rng.uniform(0.012, 0.035)))
        cv2.rectangle(img, (x, int(h * rng.uniform(0.0, 0.2))), (x + pw, h), (0.2, 0.2, 0.22), -1)
    elif kind == 2:        # a pedestrian
        ph = int(h * rng.uniform(0.2, 0.4))
        foot = int(h * rng.uniform(0.75, 1.0))
        cv2.rectangle(img, (x - ph // 8, foot - ph + ph // 6), (x + ph // 8, foot), colour, -1)
        cv2.circle(img, (x, foot - ph + ph // 12), max(2, ph // 12), (0.8, 0.6, 0.5), -1)
    else:                  # a street tree: trunk and crown
        r = int(h * rng.uniform(0.12, 0.25))
        base = int(h * rng.uniform(0.7, 0.95))
        cv2.rectangle(img, (x - 2, base - 2 * r), (x + 2, base), (0.25, 0.18, 0.1), -1)
        cv2.circle(img, (x, base - 2 * r), r, (0.12, float(rng.uniform(0.3, 0.5)), 0.12), -1)


def perturb_query(poses: Poses, difficulty: float, rng: np.random.Generator) -> Poses:
    """Move the query car into other lanes now and then, and jitter its heading.

    Lane changes hold for a while and ramp over about ten frames; heading jitter is a smooth
    random walk (standard deviation ``12 deg * difficulty``) plus a little per-frame shake.
    """
    d = check_difficulty(difficulty)
    n = len(poses)
    stints = rng.choice([-1.0, 0.0, 1.0], size=n // 40 + 2, p=[0.35, 0.3, 0.35])
    lateral = LANE_WIDTH_M * d * np.repeat(stints, 40)[:n]
    lateral = np.convolve(np.pad(lateral, 5, mode='edge'), np.ones(11) / 11, mode='valid')
    lateral = lateral + rng.normal(0.0, 0.25 * d, n)
    walk = np.zeros(n)
    for i in range(1, n):                    # AR(1): correlation ~0.9 from frame to frame
        walk[i] = 0.9 * walk[i - 1] + rng.normal(0.0, np.sqrt(1 - 0.81))
    yaw = poses.yaw_rad + np.radians(12.0 * d) * walk + rng.normal(0.0, np.radians(1.0) * d, n)
    right = np.stack([np.sin(poses.yaw_rad), -np.cos(poses.yaw_rad)], axis=1)
    return replace(poses, xy_m=poses.xy_m + lateral[:, None] * right,
                   yaw_rad=(yaw + np.pi) % (2 * np.pi) - np.pi)
