"""Training-only augmentation on pre-processed batches: random affine distortions, flips, 90° turns.

Applied to tensors after `twinstream.images.preprocess.preprocess` (one vectorised ``grid_sample`` per batch),
so the pre-processing that serving repeats stays exactly the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from training.splits import Augmentation


def _uniform(n: int, bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1) * bound


def random_affine(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Rotate, scale, shear and translate each image of (N, C, H, W) by small random amounts.

    Borders are padded by replication, which keeps the (normalised) background value.
    """
    n = x.shape[0]
    if n == 0 or not (aug.rotate_deg or aug.translate or aug.scale or aug.shear_deg):
        return x
    angle = _uniform(n, math.radians(aug.rotate_deg), gen)
    shear = _uniform(n, math.radians(aug.shear_deg), gen)
    scale = 1.0 + _uniform(n, aug.scale, gen)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / scale
    theta[:, 0, 1] = (-sin + torch.tan(shear) * cos) / scale
    theta[:, 1, 0] = sin / scale
    theta[:, 1, 1] = (cos + torch.tan(shear) * sin) / scale
    theta[:, 0, 2] = _uniform(n, 2 * aug.translate, gen)
    theta[:, 1, 2] = _uniform(n, 2 * aug.translate, gen)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    out = x.clone()
    out[flip] = x[flip].flip(-1)
    return out


def rotate_quarters(x: torch.Tensor, quarters: torch.Tensor) -> torch.Tensor:
    """Turn image i by ``quarters[i]`` × 90° (square inputs only)."""
    out = x.clone()
    for q in (1, 2, 3):
        sel = quarters == q
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], k=q, dims=(-2, -1))
    return out


def augment(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """All configured label-preserving distortions of a batch."""
    if aug.hflip:
        x = random_hflip(x, gen)
    return random_affine(x, aug, gen)
