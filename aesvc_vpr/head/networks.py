"""The networks of the projection head: AE-SVC autoencoder and (SS)2D student (no losses, no loop).

All three MLPs have the shape Linear -> ReLU -> Linear -> ReLU -> Linear, with one hidden width
between the input and latent sizes (PAPER.md [U]). They work on standardised backbone embeddings;
standardisation, losses and training live in ``train.py`` and ``losses.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from aesvc_vpr.config import HeadConfig
from aesvc_vpr.errors import HeadError


def resolve_hidden_dim(input_dim: int, cfg: HeadConfig) -> int:
    """Return the hidden width: ``cfg.hidden_dim``, or midway between input and latent when 0.

    Raises:
        HeadError: input_dim < 1 or a negative hidden_dim.
    """
    if input_dim < 1:
        raise HeadError(f'head input dimension must be >= 1, got {input_dim}')
    if cfg.hidden_dim < 0:
        raise HeadError(f'head.hidden_dim must be >= 0 (0: midway), got {cfg.hidden_dim}')
    return cfg.hidden_dim or (input_dim + cfg.latent_dim) // 2


def mlp(in_dim: int, hidden_dim: int, out_dim: int, shortcut: bool = False) -> nn.Sequential:
    """Linear -> ReLU -> Linear -> ReLU -> Linear; the output is linear (may be negative).

    Weights get He (Kaiming) normal initialisation and biases zero, so activations keep roughly
    unit variance through the ReLUs. torch's default init shrinks variance about 3x per layer,
    which starts the latent near collapse and costs hundreds of steps to undo.

    Args:
        in_dim: input width.
        hidden_dim: width of both hidden layers.
        out_dim: output width.
        shortcut: also add a linear map of the input (``ShortcutMLP``).
    """
    layers = (nn.Linear(in_dim, hidden_dim), nn.ReLU(),
              nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
              nn.Linear(hidden_dim, out_dim))
    net = ShortcutMLP(*layers) if shortcut else nn.Sequential(*layers)
    for layer in layers:
        if isinstance(layer, nn.Linear):
            relu_follows = layer is not layers[-1]
            gain = 'relu' if relu_follows else 'linear'
            nn.init.kaiming_normal_(layer.weight, nonlinearity=gain)
            nn.init.zeros_(layer.bias)
    return net


class ShortcutMLP(nn.Sequential):
    """The MLP plus a linear path: y = mlp(x) + x @ shortcut.T (HeadConfig.shortcut).

    A ReLU MLP at its random init keeps neighbourhoods of its input poorly, and about a thousand
    rows are too few to learn them back; the linear path starts the map near a linear one, which
    keeps them (docs/head.md, Findings). The shortcut is a parameter, not a child module, so
    indexing (``net[-1]``) and the tensor names of the layers match the plain MLP.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        first, last = layers[0], layers[-1]
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        self.shortcut = nn.Parameter(torch.empty(last.out_features, first.in_features))
        nn.init.kaiming_normal_(self.shortcut, nonlinearity='linear')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, in) to (B, out): the MLP's output plus the linear path."""
        return super().forward(x) + x @ self.shortcut.T


class AESVCAutoencoder(nn.Module):
    """AE-SVC: encoder I -> z (the teacher latent) and decoder z -> I'."""

    def __init__(self, input_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        hidden = resolve_hidden_dim(input_dim, cfg)
        self.input_dim = input_dim
        self.latent_dim = cfg.latent_dim
        self.encoder = mlp(input_dim, hidden, cfg.latent_dim, bool(cfg.shortcut))
        self.decoder = mlp(cfg.latent_dim, hidden, input_dim, bool(cfg.decoder_shortcut))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and decode a batch.

        Args:
            x: (B, input_dim) float32 standardised embeddings.

        Returns:
            z (B, latent_dim) and the reconstruction (B, input_dim); neither is normalised.
        """
        z = self.encoder(x)
        return z, self.decoder(z)


class SS2DStudent(nn.Module):
    """(SS)2D student: one embedding whose nested prefixes each keep the teacher's similarities."""

    def __init__(self, input_dim: int, cfg: HeadConfig, out_dim: int | None = None) -> None:
        """Build the student.

        Args:
            input_dim: backbone embedding size.
            cfg: head shape; the output size is ``cfg.latent_dim`` unless ``out_dim`` is given
                (the per-size SSD baseline trains one small student per size).
            out_dim: optional output size override.
        """
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = out_dim or cfg.latent_dim
        self.net = mlp(input_dim, resolve_hidden_dim(input_dim, cfg), self.output_dim,
                       bool(cfg.shortcut))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, input_dim) standardised embeddings to (B, output_dim), not normalised."""
        return self.net(x)
