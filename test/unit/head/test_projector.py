"""Projector: the shared interface, the inference path, and the documented prefix policy."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from head_samples import BACKBONE, tiny_head_file, tiny_raw
import numpy as np
import pytest
from safetensors.torch import load_file
import torch

from aesvc_vpr.errors import HeadError
import aesvc_vpr.head.projector as projector_module
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.index.prefix import l2_prefix


@pytest.fixture(scope='module')
def head(tmp_path_factory) -> tuple[Path, np.ndarray]:
    return tiny_head_file(tmp_path_factory.mktemp('projector'))


def test_attributes(head):
    path, _ = head
    projector = Projector.load(path, BACKBONE, 24)
    assert (projector.backbone_name, projector.input_dim) == (BACKBONE, 24)
    assert projector.prefix_sizes == (4, 8, 16) and projector.output_dim == 16
    assert projector.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()


def test_project_is_the_student_on_standardised_input(head):
    path, raw = head
    projector = Projector.load(path)
    queries = tiny_raw(rows=7, seed=5)
    out = projector.project(queries.astype(np.float16))
    assert out.shape == (7, 16) and out.dtype == np.float32
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)      # full size, not normalised
    # recompute independently from the stored tensors with plain torch ops
    weights = load_file(str(path))
    mean = raw.astype(np.float64).mean(axis=0)
    scale = np.sqrt(((raw.astype(np.float64) - mean) ** 2).mean())     # one scale for all
    x = torch.from_numpy(((queries.astype(np.float16).astype(np.float64) - mean) / scale)
                         .astype(np.float32))
    h = x
    for i in (0, 2, 4):
        h = h @ weights[f'student.net.{i}.weight'].T + weights[f'student.net.{i}.bias']
        h = torch.relu(h) if i < 4 else h
    h = h + x @ weights['student.net.shortcut'].T                      # the linear path
    assert np.allclose(out, h.numpy(), atol=1e-4)


def test_project_in_chunks_equals_one_pass(head, monkeypatch):
    path, _ = head
    projector = Projector.load(path)
    raw = tiny_raw(rows=10, seed=6)
    whole = projector.project(raw)
    monkeypatch.setattr(projector_module, 'BATCH', 3)
    assert np.allclose(projector.project(raw), whole, atol=1e-6)


def test_prefix_policy(head, caplog):
    path, _ = head
    projector = Projector.load(path)
    with caplog.at_level(logging.WARNING, logger='aesvc_vpr.head.projector'):
        assert projector.check_prefix(8) == 8
        assert not caplog.records
        assert projector.check_prefix(12) == 12              # untrained: accepted, warned once
        assert projector.check_prefix(12) == 12
        assert projector.check_prefix(1) == 1
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and 'prefix size 12 was not trained' in warned[0]
    with pytest.raises(HeadError, match=r'outside 1\.\.16'):
        projector.check_prefix(17)
    with pytest.raises(HeadError, match=r'outside 1\.\.16'):
        projector.check_prefix(0)


def test_prefix_is_the_normalised_leading_part(head):
    path, _ = head
    projector = Projector.load(path)
    raw = tiny_raw(rows=5, seed=7)
    prefix = projector.prefix(raw, 8)
    assert prefix.shape == (5, 8)
    assert np.allclose(np.linalg.norm(prefix, axis=1), 1.0, atol=1e-6)
    assert np.allclose(prefix, l2_prefix(projector.project(raw), 8))


def test_wrong_input_is_a_head_error(head):
    path, _ = head
    projector = Projector.load(path)
    with pytest.raises(HeadError, match=r'expects \(N, 24\).*got shape \(3, 384\)'):
        projector.project(np.zeros((3, 384), np.float32))
    with pytest.raises(HeadError, match='NaN'):
        projector.project(np.full((2, 24), np.nan, np.float32))
    with pytest.raises(HeadError, match='input dimension 24.*gives 768'):
        Projector.load(path, input_dim=768)
