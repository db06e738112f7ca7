"""Head files: round trip, fingerprint, and a HeadError for every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from head_samples import BACKBONE, TINY_HEAD, tiny_head_file, tiny_raw, TINY_TRAIN
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file
import torch

from aesvc_vpr.config import HeadConfig, TrainConfig
from aesvc_vpr.errors import HeadError
from aesvc_vpr.head.headfile import (DataFingerprint, FORMAT_VERSION, HeadMeta, load_head,
                                     META_KEY, save_head, Standardisation)
from aesvc_vpr.head.networks import AESVCAutoencoder, SS2DStudent


@pytest.fixture(scope='module')
def head_path(tmp_path_factory) -> Path:
    path, _ = tiny_head_file(tmp_path_factory.mktemp('head'))
    return path


def rewrite(source: Path, target: Path, edit_meta: Callable[[dict[str, Any]], None] | None = None,
            edit_tensors: Callable[[dict[str, torch.Tensor]], None] | None = None) -> Path:
    """Copy a head file through safetensors' own API, editing metadata and/or tensors."""
    with safe_open(str(source), 'pt') as handle:
        doc = json.loads(handle.metadata()[META_KEY])
    tensors = load_file(str(source))
    if edit_meta:
        edit_meta(doc)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(target), metadata={META_KEY: json.dumps(doc)})
    return target


def test_round_trip_and_fingerprint(head_path):
    head = load_head(head_path)
    assert head.fingerprint == hashlib.sha256(head_path.read_bytes()).hexdigest()
    assert head.meta.format_version == FORMAT_VERSION
    assert head.meta.backbone_name == BACKBONE and head.meta.input_dim == 24
    assert head.meta.head.latent_dim == TINY_HEAD.latent_dim
    assert head.meta.train.tau == TINY_TRAIN.tau and head.meta.train.w_var == TINY_TRAIN.w_var
    stored = load_file(str(head_path))
    assert torch.equal(stored['student.net.4.weight'], head.student.net[4].weight)
    assert torch.equal(stored['autoencoder.decoder.0.bias'], head.autoencoder.decoder[0].bias)
    assert not head.student.training
    assert [p.name for p in head_path.parent.iterdir() if p.name.endswith('.tmp')] == []


def test_metadata_is_inside_the_safetensors_header(head_path):
    with safe_open(str(head_path), 'pt') as handle:
        doc = json.loads(handle.metadata()[META_KEY])
    assert doc['backbone'] == {'name': BACKBONE, 'input_dim': 24}
    assert set(doc) >= {'format_version', 'head', 'train', 'standardisation', 'training_data',
                        'report', 'created_utc', 'package_version'}
    assert len(doc['standardisation']['mean']) == 24
    assert doc['training_data']['count'] == 160 and len(doc['training_data']['sha256']) == 64


def test_backbone_mismatch_names_both_values(head_path):
    with pytest.raises(HeadError, match=r'expects input dimension 24, the backbone gives 384'):
        load_head(head_path, input_dim=384)
    with pytest.raises(HeadError, match=rf"'{BACKBONE}'.*'vit_small_patch14_dinov2'"):
        load_head(head_path, backbone_name='vit_small_patch14_dinov2')
    assert load_head(head_path, BACKBONE, 24).meta.input_dim == 24


@pytest.mark.parametrize('damage, message', [
    (lambda data: data[:len(data) // 2], 'truncated or corrupt'),
    (lambda data: data[:5], 'truncated or corrupt'),
    (lambda data: b'\x00' * len(data), 'truncated or corrupt'),
    (lambda data: b'not a head file at all', 'truncated or corrupt'),
])
def test_truncated_or_garbage_files(head_path, tmp_path, damage, message):
    broken = tmp_path / 'broken.safetensors'
    broken.write_bytes(damage(head_path.read_bytes()))
    with pytest.raises(HeadError, match=message):
        load_head(broken)


def test_missing_file(tmp_path):
    with pytest.raises(HeadError, match='cannot read head file.*train-head'):
        load_head(tmp_path / 'nope.safetensors')


def test_plain_safetensors_without_metadata(tmp_path):
    save_file({'w': torch.zeros(2)}, str(tmp_path / 'plain.safetensors'))
    with pytest.raises(HeadError, match='not an aesvc_vpr head file'):
        load_head(tmp_path / 'plain.safetensors')


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value
    return edit


@pytest.mark.parametrize('edit, message', [
    (_set(['format_version'], 99), 'format version 99 is not supported'),
    (_set(['format'], 'other'), 'is not'),
    (_set(['backbone', 'input_dim'], 'x'), "'input_dim'"),
    (_set(['backbone', 'name'], ''), 'non-empty'),
    (_set(['head', 'prefix_sizes'], [16, 8]), 'invalid head/train settings'),
    (_set(['train', 'tau'], -1.0), 'invalid head/train settings'),
    (_set(['train', 'unknown_field'], 1), 'invalid head/train settings'),
    (_set(['head', 'hidden_dim'], 0), 'resolved width'),
    (_set(['standardisation', 'std'], [1.0] * 23), 'expected 24'),
    (_set(['standardisation', 'std'], [0.0] * 24), 'std > 0'),
    (_set(['training_data', 'sha256'], 'abc'), 'sha256'),
    (_set(['report', 'aesvc.rec'], 'high'), 'report values'),
    (_set(['created_utc'], None), "'created_utc'"),
])
def test_invalid_metadata(head_path, tmp_path, edit, message):
    broken = rewrite(head_path, tmp_path / 'bad.safetensors', edit_meta=edit)
    with pytest.raises(HeadError, match=message):
        load_head(broken)


def test_weights_that_do_not_fit_the_metadata(head_path, tmp_path):
    wider = rewrite(head_path, tmp_path / 'wider.safetensors',
                    edit_meta=_set(['head', 'latent_dim'], 32))
    with pytest.raises(HeadError, match='weights do not fit the metadata'):
        load_head(wider)

    def drop(tensors: dict[str, torch.Tensor]) -> None:
        del tensors['student.net.2.bias']
    with pytest.raises(HeadError, match='student weights do not fit'):
        load_head(rewrite(head_path, tmp_path / 'drop.safetensors', edit_tensors=drop))

    def extra(tensors: dict[str, torch.Tensor]) -> None:
        tensors['optimiser.state'] = torch.zeros(3)
    with pytest.raises(HeadError, match='unexpected tensors'):
        load_head(rewrite(head_path, tmp_path / 'extra.safetensors', edit_tensors=extra))

    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors['student.net.0.weight'][0, 0] = float('nan')
    with pytest.raises(HeadError, match='NaN or inf'):
        load_head(rewrite(head_path, tmp_path / 'nan.safetensors', edit_tensors=poison))


def test_a_format_1_head_without_linear_paths_still_loads(tmp_path):
    """Heads written before format 2 (plain MLPs, no shortcut fields) keep working."""
    cfg = HeadConfig(latent_dim=16, prefix_sizes=(4, 8, 16), shortcut=0, decoder_shortcut=0)
    autoencoder, student = AESVCAutoencoder(24, cfg), SS2DStudent(24, cfg)
    raw = tiny_raw()
    meta = HeadMeta(BACKBONE, 24, dataclasses.replace(cfg, hidden_dim=20), TrainConfig(),
                    Standardisation.fit(raw, per_dimension=True), DataFingerprint.of(raw),
                    format_version=1)
    written = tmp_path / 'v2.safetensors'
    save_head(written, meta, autoencoder, student)

    def as_format_1(doc: dict[str, Any]) -> None:
        del doc['head']['shortcut'], doc['head']['decoder_shortcut']
        doc['format_version'] = 1
    legacy = rewrite(written, tmp_path / 'v1.safetensors', edit_meta=as_format_1)
    head = load_head(legacy)
    assert head.meta.format_version == 1 and head.meta.head.shortcut == 0
    assert not hasattr(head.student.net, 'shortcut')
    x = torch.from_numpy(head.meta.standardisation.apply(raw))
    with torch.no_grad():
        assert torch.equal(head.student(x), student.eval()(x))
