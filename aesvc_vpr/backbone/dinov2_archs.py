"""The DINOv2 family by name: shapes, aliases, and where each model's official weights live.

One table serves three readers: the weights loader (does a checkpoint fit the requested model?),
the backbone (which timm architecture to build) and the error messages (how to get weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from aesvc_vpr.errors import BackboneError

HUB_URL = 'https://dl.fbaipublicfiles.com/dinov2'
_SIZES = {'small': 's', 'base': 'b', 'large': 'l', 'giant': 'g'}


@dataclass(frozen=True)
class Dinov2Arch:
    """The shape of a DINOv2 ViT: what a checkpoint must match and what timm must build."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int            # fc1 output features (gate and value together for SwiGLU)
    swiglu: bool = False       # ViT-g uses a packed SwiGLU MLP instead of GELU
    reg_tokens: int = 0        # 4 for the *_reg4 models
    patch_size: int = 14

    def describe(self) -> str:
        """Return a short human form for messages, e.g. 'width 384, depth 12, 6 heads'."""
        extra = f', {self.reg_tokens} registers' if self.reg_tokens else ''
        mlp = 'SwiGLU' if self.swiglu else 'GELU'
        return (f'width {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, '
                f'{mlp} MLP {self.mlp_hidden}, patch {self.patch_size}{extra}')

    def timm_kwargs(self, img_size: int) -> tuple[str, dict[str, object]]:
        """Give the timm entrypoint of this family and the overrides for exactly this shape.

        Returns:
            (timm model name, kwargs for ``timm.create_model``) with pretrained weights off.
        """
        family = 'giant' if self.swiglu else 'small'
        reg = '_reg4' if self.reg_tokens else ''
        # timm sizes the MLP as int(embed_dim * mlp_ratio); +0.5 keeps float rounding from
        # landing one feature short (8192 / 1536 is not exact in binary)
        mlp_ratio = (self.mlp_hidden + 0.5) / self.embed_dim
        kwargs: dict[str, object] = {
            'pretrained': False, 'img_size': img_size, 'patch_size': self.patch_size,
            'embed_dim': self.embed_dim, 'depth': self.depth, 'num_heads': self.num_heads,
            'mlp_ratio': mlp_ratio, 'num_classes': 0}
        if self.reg_tokens:
            kwargs['reg_tokens'] = self.reg_tokens
        return f'vit_{family}_patch14{reg}_dinov2', kwargs


def _arch(size: str, reg: bool) -> Dinov2Arch:
    dim, depth, heads = {'small': (384, 12, 6), 'base': (768, 12, 12),
                         'large': (1024, 24, 16), 'giant': (1536, 40, 24)}[size]
    swiglu = size == 'giant'
    return Dinov2Arch(dim, depth, heads, 8192 if swiglu else 4 * dim, swiglu, 4 if reg else 0)


MODELS: dict[str, Dinov2Arch] = {
    f'vit_{size}_patch14{"_reg4" if reg else ""}_dinov2': _arch(size, reg)
    for size in _SIZES for reg in (False, True)}


def hub_name(model_name: str) -> str:
    """Return Meta's torch.hub name, e.g. 'dinov2_vits14' or 'dinov2_vits14_reg'."""
    size = model_name.split('_')[1]
    return f'dinov2_vit{_SIZES[size]}14' + ('_reg' if MODELS[model_name].reg_tokens else '')


def hub_file(model_name: str) -> str:
    """Return the official checkpoint file name, e.g. 'dinov2_vits14_reg4_pretrain.pth'."""
    base = hub_name(model_name).removesuffix('_reg')
    return f'{base}_reg4_pretrain.pth' if MODELS[model_name].reg_tokens else f'{base}_pretrain.pth'


def hub_url(model_name: str) -> str:
    """Return where Meta publishes that checkpoint."""
    return f'{HUB_URL}/{hub_name(model_name).removesuffix("_reg")}/{hub_file(model_name)}'


def hf_repos(model_name: str) -> tuple[str, ...]:
    """List the Hugging Face repositories with these weights: transformers first, then timm."""
    size = model_name.split('_')[1]
    reg = MODELS[model_name].reg_tokens
    facebook = f'facebook/dinov2-{"with-registers-" if reg else ""}{size}'
    return facebook, f'timm/{model_name}.lvd142m'


def resolve_model_name(name: str) -> str:
    """Map an accepted spelling to the timm name.

    Accepts timm names (optionally with a '.lvd142m' tag) and Meta's hub names
    ('dinov2_vits14', 'dinov2_vitb14_reg', 'dinov2_vitl14_reg4').

    Raises:
        BackboneError: not a DINOv2 model; the message lists the valid names.
    """
    base = name.strip().split('.')[0]
    if base in MODELS:
        return base
    aliases = {hub_name(m): m for m in MODELS}
    aliases.update({f'{hub_name(m)}4': m for m in MODELS if MODELS[m].reg_tokens})
    if base in aliases:
        return aliases[base]
    raise BackboneError(f'backbone.model_name {name!r} is not a known model; use auto, '
                        f'patchgrid, one of {", ".join(MODELS)} or a hub alias such as '
                        'dinov2_vits14')


def name_of(arch: Dinov2Arch) -> str | None:
    """Return the official model of exactly this shape, or None (e.g. a tiny test model)."""
    return next((name for name, known in MODELS.items() if known == arch), None)
