"""Tiny random DINOv2 models for the backbone tests, built with transformers (the reference).

Each model is saved as a Hugging Face folder (config.json + model.safetensors, transformers
keys) and as a Meta torch.hub checkpoint (keys converted back here, independently of the
package's own converter, so a wrong rename cannot cancel itself out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aesvc_vpr.backbone.dinov2_archs import Dinov2Arch

WIDTH, DEPTH, HEADS, NATIVE = 48, 2, 3, 518


def tiny_arch(registers: bool, swiglu: bool = False) -> Dinov2Arch:
    """Return the shape of the tiny models, as the package describes it.

    SwiGLU (the ViT-g family) keeps 2/3 of the 4x hidden width, rounded up to 8: 128 for width
    48, packed as gate and value into one 256-wide fc1.
    """
    mlp_hidden = 256 if swiglu else 4 * WIDTH
    return Dinov2Arch(WIDTH, DEPTH, HEADS, mlp_hidden, swiglu, reg_tokens=4 if registers else 0)


def hf_model(registers: bool, image_size: int = NATIVE, seed: int = 0,
             swiglu: bool = False) -> torch.nn.Module:
    """Build a random transformers Dinov2Model / Dinov2WithRegistersModel in eval mode.

    Every parameter gets extra noise so biases, norms and layer scales are not at their
    trivial initial values (a swapped bias would otherwise go unnoticed).
    """
    import transformers
    kwargs = {'hidden_size': WIDTH, 'num_hidden_layers': DEPTH, 'num_attention_heads': HEADS,
              'mlp_ratio': 4, 'patch_size': 14, 'image_size': image_size,
              'layerscale_value': 0.5, 'use_swiglu_ffn': swiglu}
    if registers:
        model = transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **kwargs))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(**kwargs))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def save_hf(model: torch.nn.Module, folder: Path) -> Path:
    """save_pretrained as safetensors; returns the folder."""
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def meta_state(hf_folder: Path) -> dict[str, torch.Tensor]:
    """Read a saved Hugging Face folder's weights under Meta's dinov2_vits14_pretrain names."""
    from safetensors.torch import load_file
    hf = load_file(str(hf_folder / 'model.safetensors'))
    out = {'cls_token': hf['embeddings.cls_token'], 'mask_token': hf['embeddings.mask_token'],
           'pos_embed': hf['embeddings.position_embeddings'],
           'patch_embed.proj.weight': hf['embeddings.patch_embeddings.projection.weight'],
           'patch_embed.proj.bias': hf['embeddings.patch_embeddings.projection.bias'],
           'norm.weight': hf['layernorm.weight'], 'norm.bias': hf['layernorm.bias']}
    if 'embeddings.register_tokens' in hf:
        out['register_tokens'] = hf['embeddings.register_tokens']
    for i in range(DEPTH):
        hf_block, block = f'encoder.layer.{i}.', f'blocks.{i}.'
        att = hf_block + 'attention.attention.'
        for kind in ('weight', 'bias'):
            out[f'{block}attn.qkv.{kind}'] = torch.cat(
                [hf[f'{att}{p}.{kind}'] for p in ('query', 'key', 'value')])
            out[f'{block}attn.proj.{kind}'] = hf[f'{hf_block}attention.output.dense.{kind}']
            for name in ('norm1', 'norm2', 'mlp.fc1', 'mlp.fc2'):
                if f'{hf_block}{name}.{kind}' in hf:
                    out[f'{block}{name}.{kind}'] = hf[f'{hf_block}{name}.{kind}']
            for hf_name, name in (('weights_in', 'w12'), ('weights_out', 'w3')):   # SwiGLU
                if f'{hf_block}mlp.{hf_name}.{kind}' in hf:
                    out[f'{block}mlp.{name}.{kind}'] = hf[f'{hf_block}mlp.{hf_name}.{kind}']
        out[f'{block}ls1.gamma'] = hf[f'{hf_block}layer_scale1.lambda1']
        out[f'{block}ls2.gamma'] = hf[f'{hf_block}layer_scale2.lambda1']
    assert len(out) == len(hf) - 4 * DEPTH, 'every transformers tensor must be used once'
    return out


def save_meta(hf_folder: Path, path: Path) -> Path:
    """torch.save the Meta-layout state dict (a plain dict of tensors, as Meta ships it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(meta_state(hf_folder), path)
    return path


def reference_tokens(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Run transformers: last_hidden_state (B, 1 + R + P, C), pos-embeds resampled our way.

    At the native size the model runs as is. Otherwise an identical model is built for the
    new size with its position table resampled HERE, by an explicit bicubic, align_corners=False,
    antialias=False F.interpolate, so transformers never resamples by its own rule (which has
    antialias=True for the register models).
    """
    size = pixels.shape[-1]
    if size != NATIVE:
        registers = hasattr(model.embeddings, 'register_tokens')
        resized = hf_model(registers, image_size=size, swiglu=model.config.use_swiglu_ffn)
        state = dict(model.state_dict())
        state['embeddings.position_embeddings'] = resample_reference(
            state['embeddings.position_embeddings'], size // 14)
        resized.load_state_dict(state)
        model = resized
    with torch.no_grad():
        return model(pixel_values=pixels).last_hidden_state


def resample_reference(table: torch.Tensor, grid: int, antialias: bool = False) -> torch.Tensor:
    """(1, 1 + G*G, C) -> (1, 1 + grid*grid, C): class entry kept, patch grid bicubic."""
    side = int(round((table.shape[1] - 1) ** 0.5))
    patches = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode='bicubic', align_corners=False,
                            antialias=antialias)
    return torch.cat([table[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], 1)


META_KEYS_BLOCK = ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias',
                   'attn.proj.weight', 'attn.proj.bias', 'ls1.gamma', 'norm2.weight',
                   'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight',
                   'mlp.fc2.bias', 'ls2.gamma')


@dataclass(frozen=True)
class Tiny:
    """One tiny model and its two saved forms."""

    model: torch.nn.Module
    registers: bool
    hf_dir: Path
    meta_path: Path


def make_tiny(root: Path, registers: bool, swiglu: bool = False) -> Tiny:
    """Build, save (HF folder and Meta .pth) and return a tiny model under ``root``."""
    model = hf_model(registers, swiglu=swiglu)
    name = ('reg4' if registers else 'plain') + ('_swiglu' if swiglu else '')
    hf_dir = save_hf(model, root / f'hf_{name}')
    meta_path = save_meta(hf_dir, root / f'meta_{name}' / f'tiny_{name}_pretrain.pth')
    return Tiny(model, registers, hf_dir, meta_path)


def images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Random RGB uint8 images of mixed sizes (resizing is part of what is tested)."""
    rng = np.random.default_rng(seed)
    shapes = [(120, 160, 3), (90, 90, 3), (300, 200, 3), (64, 96, 3)]
    return [rng.integers(0, 256, shapes[i % len(shapes)], dtype=np.uint8) for i in range(count)]


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every cache this code reads or writes (ours, torch.hub, Hugging Face) into tmp."""
    monkeypatch.setenv('AESVC_VPR_CACHE', str(tmp_path / 'aesvc_cache'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hf_hub'))


@pytest.fixture(scope='module', params=[False, True], ids=['plain', 'reg4'])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Each tiny model (without and with registers), built once per test module."""
    return make_tiny(tmp_path_factory.mktemp('tiny'), request.param)
