"""Checkpoint key layouts of DINOv2 (Meta torch.hub, transformers, timm) -> timm's layout.

Pure dict-of-tensor transforms, so every loader path ends in the same layout and the same shape
checks. The Meta layout is the hub: transformers keys are first renamed to Meta's, then Meta's are
converted to timm's exactly as timm converts the official checkpoints.
"""

from __future__ import annotations

import re

import torch

from aesvc_vpr.backbone.dinov2_archs import Dinov2Arch
from aesvc_vpr.errors import WeightsError

StateDict = dict[str, torch.Tensor]

# transformers name -> Meta name, for the parts that are a plain rename
_HF_RENAMES = (
    (r'^embeddings\.cls_token$', 'cls_token'),
    (r'^embeddings\.mask_token$', 'mask_token'),
    (r'^embeddings\.register_tokens$', 'register_tokens'),
    (r'^embeddings\.position_embeddings$', 'pos_embed'),
    (r'^embeddings\.patch_embeddings\.projection\.', 'patch_embed.proj.'),
    (r'^encoder\.layer\.(\d+)\.norm([12])\.', r'blocks.\1.norm\2.'),
    (r'^encoder\.layer\.(\d+)\.attention\.output\.dense\.', r'blocks.\1.attn.proj.'),
    (r'^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$', r'blocks.\1.ls\2.gamma'),
    (r'^encoder\.layer\.(\d+)\.mlp\.(fc[12])\.', r'blocks.\1.mlp.\2.'),
    (r'^encoder\.layer\.(\d+)\.mlp\.weights_in\.', r'blocks.\1.mlp.w12.'),
    (r'^encoder\.layer\.(\d+)\.mlp\.weights_out\.', r'blocks.\1.mlp.w3.'),
    (r'^layernorm\.', 'norm.'),
)
_HF_QKV = re.compile(r'^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(\w+)$')


def detect_layout(state: StateDict) -> str:
    """Tell 'transformers', 'meta' or 'timm' layout from the keys alone (names can lie).

    Raises:
        WeightsError: none of the three (the caller adds the file name).
    """
    if 'embeddings.cls_token' in state:
        return 'transformers'
    if 'cls_token' in state and 'blocks.0.attn.qkv.weight' in state:
        meta_only = 'mask_token' in state or 'register_tokens' in state
        return 'meta' if meta_only or 'blocks.0.mlp.w12.weight' in state else 'timm'
    keys = ', '.join(sorted(state)[:6])
    raise WeightsError(f'not a DINOv2 checkpoint (no cls_token / blocks.0.attn.qkv); keys: {keys}')


def strip_prefix(state: StateDict) -> StateDict:
    """Drop wrapper prefixes ('dinov2.', 'backbone.', 'module.', 'model.') and classifier heads."""
    out = {}
    for key, value in state.items():
        key = re.sub(r'^(module\.|model\.|backbone\.|dinov2\.)+', '', key)
        if not key.startswith(('classifier.', 'head.', 'fc_norm.')):
            out[key] = value
    return out


def hf_to_meta(state: StateDict) -> StateDict:
    """Rename transformers Dinov2Model / Dinov2WithRegistersModel keys to Meta's hub keys.

    Separate query/key/value projections are concatenated into Meta's fused ``qkv`` (q, k, v
    order along the output dimension).
    """
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _HF_QKV.match(key)
        if match:
            block, part, kind = match.groups()
            qkv.setdefault((block, kind), {})[part] = value
            continue
        for pattern, repl in _HF_RENAMES:
            new, count = re.subn(pattern, repl, key)
            if count:
                out[new] = value
                break
        else:
            raise WeightsError(f'unexpected transformers DINOv2 key {key!r}')
    for (block, kind), parts in qkv.items():
        if set(parts) != {'query', 'key', 'value'}:
            raise WeightsError(f'layer {block}: attention {kind} lacks one of query/key/value')
        out[f'blocks.{block}.attn.qkv.{kind}'] = torch.cat(
            [parts['query'], parts['key'], parts['value']], dim=0)
    return out


def meta_to_timm(state: StateDict) -> StateDict:
    """Rename Meta torch.hub keys to timm ``vit_*_dinov2`` keys.

    With registers timm uses ``no_embed_class``: the class token's position embedding is folded
    into the token itself and ``pos_embed`` covers the patches only.
    """
    state = dict(state)
    state.pop('mask_token', None)
    out: StateDict = {}
    if 'register_tokens' in state:
        pos = state.pop('pos_embed')
        out['reg_token'] = state.pop('register_tokens')
        out['cls_token'] = state.pop('cls_token') + pos[:, :1]
        out['pos_embed'] = pos[:, 1:]
    for key, value in state.items():
        out[re.sub(r'\.mlp\.w12\.', '.mlp.fc1.', re.sub(r'\.mlp\.w3\.', '.mlp.fc2.', key))] = value
    return out


def arch_of(state: StateDict, num_heads: int) -> Dinov2Arch:
    """Read the shape of a timm-layout state dict (the head count cannot be seen in it).

    A packed SwiGLU MLP shows as fc2 taking half of fc1's outputs (gate times value).

    Raises:
        WeightsError: a tensor the shape depends on is missing.
    """
    try:
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r'blocks\.(\d+)\.', k)))
        mlp_hidden = int(state['blocks.0.mlp.fc1.weight'].shape[0])
        return Dinov2Arch(
            embed_dim=int(state['cls_token'].shape[-1]), depth=depth, num_heads=num_heads,
            mlp_hidden=mlp_hidden,
            swiglu=2 * int(state['blocks.0.mlp.fc2.weight'].shape[1]) == mlp_hidden,
            reg_tokens=int(state['reg_token'].shape[1]) if 'reg_token' in state else 0,
            patch_size=int(state['patch_embed.proj.weight'].shape[-1]))
    except (KeyError, ValueError, IndexError) as err:
        raise WeightsError(f'incomplete DINOv2 checkpoint: missing {err}') from err
