"""Shapes and layer structure of the AE-SVC autoencoder and the (SS)2D student."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aesvc_vpr.config import HeadConfig
from aesvc_vpr.errors import ConfigError, HeadError
from aesvc_vpr.head.networks import AESVCAutoencoder, resolve_hidden_dim, ShortcutMLP, SS2DStudent


def test_hidden_width_is_midway_unless_given():
    assert resolve_hidden_dim(384, HeadConfig()) == 320
    assert resolve_hidden_dim(768, HeadConfig(latent_dim=128, prefix_sizes=(64, 128))) == 448
    assert resolve_hidden_dim(384, HeadConfig(hidden_dim=100)) == 100
    with pytest.raises(HeadError, match='hidden_dim'):
        resolve_hidden_dim(384, HeadConfig(hidden_dim=-1))
    with pytest.raises(HeadError, match='input dimension'):
        resolve_hidden_dim(0, HeadConfig())


def test_autoencoder_layers_and_shapes():
    ae = AESVCAutoencoder(40, HeadConfig(latent_dim=16, prefix_sizes=(8, 16)))
    kinds = [type(layer) for layer in ae.encoder]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [ae.encoder[i].out_features for i in (0, 2, 4)] == [28, 28, 16]
    assert [ae.decoder[i].out_features for i in (0, 2, 4)] == [28, 28, 40]
    z, x_rec = ae(torch.randn(5, 40))
    assert z.shape == (5, 16) and x_rec.shape == (5, 40)
    assert (z < 0).any()      # the latent is linear, not a ReLU output


def test_student_shapes_and_output_override():
    cfg = HeadConfig(latent_dim=32, prefix_sizes=(8, 32))
    assert SS2DStudent(20, cfg)(torch.randn(3, 20)).shape == (3, 32)
    small = SS2DStudent(20, cfg, out_dim=8)
    assert small.output_dim == 8 and small(torch.randn(3, 20)).shape == (3, 8)


def test_initialisation_keeps_activation_scale():
    torch.manual_seed(0)
    ae = AESVCAutoencoder(256, HeadConfig())
    with torch.no_grad():
        z = ae.encoder(torch.randn(2048, 256))
    # He init: the latent starts with variance of order 1, not shrunk ~100x by the default init
    assert 0.2 < float(z.var(dim=0).mean()) < 5.0
    assert all(not layer.bias.detach().any() for layer in ae.encoder
               if isinstance(layer, nn.Linear))


def test_shortcut_adds_a_linear_path_and_keeps_the_layer_names():
    cfg = HeadConfig(latent_dim=16, prefix_sizes=(8, 16), shortcut=1, decoder_shortcut=0)
    ae, student = AESVCAutoencoder(40, cfg), SS2DStudent(40, cfg)
    assert isinstance(ae.encoder, ShortcutMLP) and isinstance(student.net, ShortcutMLP)
    assert not isinstance(ae.decoder, ShortcutMLP)       # a format-1 head's plain decoder
    assert isinstance(AESVCAutoencoder(40, HeadConfig(16, 0, (8, 16))).decoder, ShortcutMLP)
    assert ae.encoder.shortcut.shape == (16, 40) and isinstance(ae.encoder[-1], nn.Linear)
    x = torch.randn(6, 40)
    with torch.no_grad():
        layers_only = nn.Sequential(*ae.encoder)(x)
        assert torch.allclose(ae.encoder(x), layers_only + x @ ae.encoder.shortcut.T)
    names = set(student.state_dict())
    assert names == set(SS2DStudent(40, HeadConfig(16, 0, (8, 16), shortcut=0)).state_dict()) | {
        'net.shortcut'}
    with pytest.raises(ConfigError, match='shortcut'):
        HeadConfig(shortcut=2)
