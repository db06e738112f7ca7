"""Tiny trained heads and reduced synthetic embedding sets shared by the head tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.data.synthetic_embeddings import generate, SyntheticConfig

TINY_DIM = 24
TINY_HEAD = HeadConfig(latent_dim=16, hidden_dim=0, prefix_sizes=(4, 8, 16))
TINY_TRAIN = TrainConfig(epochs=3, batch_size=32, patience=2, seed=0)
BACKBONE = 'tiny-test-backbone'

# The reduced generator of the quality tests: 128-d, 400 places x 5 database images, a
# 64-d latent with prefixes 8..64. More steps per second than the 384-d default, so a higher
# learning rate and smaller batches reach the same regime in a test's time budget.
SMALL_SYNTHETIC = SyntheticConfig(dim=128, places=400, place_dim=32, nuisance_dim=4, seed=3)
SMALL_HEAD = HeadConfig(latent_dim=64, prefix_sizes=(8, 16, 32, 64))
SMALL_TRAIN = TrainConfig(epochs=40, batch_size=128, lr=3e-3, seed=0)


def tiny_raw(rows: int = 160, seed: int = 0) -> np.ndarray:
    """(rows, 24) float32 anisotropic embeddings with a shared offset, like a backbone's."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.2, TINY_DIM)
    return (rng.standard_normal((rows, TINY_DIM)) * scales + 5.0).astype(np.float32)


def tiny_head_file(folder: Path, name: str = 'head.safetensors') -> tuple[Path, np.ndarray]:
    """Train a tiny head (a second or two) and write it; returns (path, training array)."""
    from aesvc_vpr.head.training import train_head
    raw = tiny_raw()
    return train_head(raw, BACKBONE, TINY_HEAD, TINY_TRAIN, folder / name, progress=False), raw


def small_set():
    """Draw the reduced synthetic set of the quality tests (deterministic)."""
    return generate(SMALL_SYNTHETIC)
