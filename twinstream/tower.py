"""The shared embedding tower of the Siamese network and its builder (rebuilt from a manifest by serving)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from twinstream.preprocess import InputSpec

#: Architecture name → conv width. "conv4" is the classic few-shot Conv-4 (Vinyals et al., Snell et al.).
ARCHITECTURES: dict[str, int] = {"conv4": 64, "conv4-wide": 96}


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvTower(nn.Module):
    """Four conv blocks, a linear projection and L2 normalisation.

    Outputs lie on the unit sphere, so Euclidean distances between embeddings range over [0, 2].
    """

    def __init__(self, spec: InputSpec, embedding_dim: int, width: int = 64) -> None:
        super().__init__()
        if embedding_dim < 2:
            raise ValueError(f"embedding_dim must be >= 2, got {embedding_dim}")
        self.spec = spec
        self.embedding_dim = embedding_dim
        blocks = [_block(spec.channels, width)] + [_block(width, width) for _ in range(3)]
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, spec.channels, spec.height, spec.width)).numel()
        self.head = nn.Linear(flat, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch (N, C, H, W) into unit vectors (N, embedding_dim)."""
        z = self.features(x).flatten(1)
        return F.normalize(self.head(z), p=2.0, dim=1)


def build_tower(architecture: str, spec: InputSpec, embedding_dim: int) -> nn.Module:
    """Build an untrained tower.

    Args:
        architecture: One of `ARCHITECTURES`.
        spec: Input size, channels and normalisation.
        embedding_dim: Size of the L2-normalised embedding.

    Returns:
        The tower (in training mode, contiguous memory format; callers may move it to channels_last).

    Raises:
        ValueError: For an unknown architecture or an input too small for four 2x poolings.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    if min(spec.height, spec.width) < 16:
        raise ValueError(f"{architecture} needs inputs of at least 16x16, got {spec.height}x{spec.width}")
    return ConvTower(spec, embedding_dim, width=ARCHITECTURES[architecture])
