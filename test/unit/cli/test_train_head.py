"""``aesvc-vpr train-head`` on an .npy file and on a map directory, and its input errors."""

from __future__ import annotations

from head_samples import tiny_raw
import numpy as np

from aesvc_vpr.cli import main
from aesvc_vpr.head.projector import Projector
from aesvc_vpr.retrieval.mapdb import MapDatabase

FAST = ['--epochs', '2', '--batch-size', '32', '--latent-dim', '16', '--prefix-sizes', '4,8,16',
        '--no-progress']


def test_npy_input_writes_a_head_with_the_given_settings(tmp_path, capsys):
    np.save(tmp_path / 'raw.npy', tiny_raw())
    out = tmp_path / 'head.safetensors'
    code = main(['train-head', str(tmp_path / 'raw.npy'), '--backbone', 'patchgrid', '--out',
                 str(out), '--tau', '0.2', '--size-weights', '1,2,3', '--seed', '5', *FAST])
    assert code == 0
    projector = Projector.load(out, 'patchgrid', 24)
    meta = projector.head.meta
    assert projector.prefix_sizes == (4, 8, 16)
    assert (meta.train.tau, meta.train.size_weights, meta.train.seed) == (0.2, (1.0, 2.0, 3.0), 5)
    printed = capsys.readouterr().out
    assert 'patchgrid 24-d -> 16-d' in printed and 'aesvc.cov' in printed
    assert 'select.chosen' in printed
    assert 'ss2d.kl@8' in printed


def test_map_directory_input_uses_the_maps_backbone(tmp_path):
    raw = tiny_raw()
    utm = np.stack([np.arange(len(raw)) * 10.0, np.zeros(len(raw))], axis=1) + 500000.0
    MapDatabase.write(tmp_path / 'map', raw, utm, '17T', backbone_name='patchgrid',
                      backbone_fingerprint='f' * 64)
    out = tmp_path / 'head.safetensors'
    assert main(['train-head', str(tmp_path / 'map'), '--out', str(out), *FAST]) == 0
    meta = Projector.load(out).head.meta
    assert meta.backbone_name == 'patchgrid'
    assert meta.training_data.dtype == 'float16'      # the map's stored raw array, unchanged
    assert main(['train-head', str(tmp_path / 'map'), '--backbone', 'other', '--out', str(out),
                 *FAST]) == 1


def test_input_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / 'raw.npy', tiny_raw())
    out = str(tmp_path / 'h.safetensors')
    assert main(['train-head', str(tmp_path / 'raw.npy'), '--out', out, *FAST]) == 1
    assert '--backbone NAME is required' in capsys.readouterr().err
    (tmp_path / 'bad.npy').write_bytes(b'not numpy')
    assert main(['train-head', str(tmp_path / 'bad.npy'), '--backbone', 'x', '--out', out]) == 1
    assert 'cannot read embeddings' in capsys.readouterr().err
    assert main(['train-head', str(tmp_path / 'raw.npy'), '--backbone', 'x', '--out', out,
                 '--prefix-sizes', '8,4']) == 1
    assert 'prefix_sizes' in capsys.readouterr().err
