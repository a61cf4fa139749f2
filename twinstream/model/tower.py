"""The shared embedding tower of the Siamese network and its builder (rebuilt from a manifest by serving)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from twinstream.images.preprocess import InputSpec

#: Architecture name → conv width. "conv4" is the classic few-shot Conv-4 (Vinyals et al., Snell et al.).
ARCHITECTURES: dict[str, int] = {"conv4": 64, "conv4-wide": 96}
#: dlib's face-recognition ResNet (`twinstream.model.face_resnet`): 150×150 aligned RGB chips, 128-d.
FACE_RESNET = "dlib-face-resnet-v1"


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def shifted_views(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """The 9 views of (N, C, H, W) shifted by -pixels, 0, +pixels in each direction, as (9·N, C, H, W).

    Borders are replicated (the background value), so a shifted glyph or face never meets a black edge.
    View 0 is the unshifted input; view v of image i sits at row ``v·N + i``.
    """
    h, w = x.shape[-2:]
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode="replicate")
    offsets = (0, -pixels, pixels)
    views = [padded[..., pixels + dy : pixels + dy + h, pixels + dx : pixels + dx + w]
             for dy in offsets for dx in offsets]  # fmt: skip
    return torch.cat(views)


class ConvTower(nn.Module):
    """Four conv blocks, a linear projection and L2 normalisation.

    Outputs lie on the unit sphere, so Euclidean distances between embeddings range over [0, 2].

    Test-time augmentation: with ``test_time_shifts = s > 0``, eval-mode forward embeds each image and
    its 8 neighbours shifted by ``s`` pixels and returns the normalised mean. It lives in the tower, not
    in the evaluation code, so evaluation, serving and the gallery all embed the same way; training
    (train mode) is unaffected. It costs 9× the forward work and adds 1.5 to 4 points of Omniglot
    20-way one-shot accuracy (`cli.bench.train_quality`).
    """

    def __init__(
        self, spec: InputSpec, embedding_dim: int, width: int = 64, test_time_shifts: int = 0
    ) -> None:
        super().__init__()
        if embedding_dim < 2:
            raise ValueError(f"embedding_dim must be >= 2, got {embedding_dim}")
        self.spec = spec
        self.embedding_dim = embedding_dim
        self.test_time_shifts = test_time_shifts
        blocks = [_block(spec.channels, width)] + [_block(width, width) for _ in range(3)]
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, spec.channels, spec.height, spec.width)).numel()
        self.head = nn.Linear(flat, embedding_dim)

    @property
    def test_time_shifts(self) -> int:
        """Shift in pixels of the 8 extra views averaged in eval mode (0: plain forward)."""
        return self._test_time_shifts

    @test_time_shifts.setter
    def test_time_shifts(self, pixels: int) -> None:
        limit = min(self.spec.height, self.spec.width) // 4
        if not 0 <= pixels < limit:
            raise ValueError(f"test_time_shifts must be in [0, {limit}), got {pixels}")
        self._test_time_shifts = int(pixels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch (N, C, H, W) into unit vectors (N, embedding_dim)."""
        if self.training or not self.test_time_shifts:
            return self._embed(x)
        # One pass per view, not one 9x batch: CPU convolutions slow down per image on huge batches
        # (847 ms for 1,152 images vs 9 x 47 ms, `twinstream bench stream`'s model).
        views = shifted_views(x, self.test_time_shifts).split(x.shape[0])
        total = sum((self._embed(view) for view in views), torch.zeros(()))
        return F.normalize(total, p=2.0, dim=1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last: ~3x faster CPU convolutions (the weights are moved too, by `build_tower`).
        z = self.features(x.contiguous(memory_format=torch.channels_last)).flatten(1)
        return F.normalize(self.head(z), p=2.0, dim=1)


def build_tower(
    architecture: str, spec: InputSpec, embedding_dim: int, test_time_shifts: int = 0
) -> nn.Module:
    """Build an untrained tower.

    Args:
        architecture: One of `ARCHITECTURES`.
        spec: Input size, channels and normalisation.
        embedding_dim: Size of the L2-normalised embedding.
        test_time_shifts: Shift (pixels) of the test-time views averaged in eval mode; 0 = off.

    Returns:
        The tower in training mode, weights in channels_last memory format (its forward converts inputs).

    Raises:
        ValueError: For an unknown architecture or an input too small for four 2x poolings.
    """
    if architecture == FACE_RESNET:
        return _face_resnet(spec, embedding_dim)
    if architecture not in ARCHITECTURES:
        known = sorted([*ARCHITECTURES, FACE_RESNET])
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}")
    if min(spec.height, spec.width) < 16:
        raise ValueError(f"{architecture} needs inputs of at least 16x16, got {spec.height}x{spec.width}")
    tower = ConvTower(spec, embedding_dim, ARCHITECTURES[architecture], test_time_shifts=test_time_shifts)
    return tower.to(memory_format=torch.channels_last)


def _face_resnet(spec: InputSpec, embedding_dim: int) -> nn.Module:
    from twinstream.model.face_resnet import EMBEDDING_DIM, FaceResNet, face_input_spec

    if spec != face_input_spec() or embedding_dim != EMBEDDING_DIM:
        raise ValueError(f"{FACE_RESNET} takes {face_input_spec()} and gives {EMBEDDING_DIM}-d embeddings")
    return FaceResNet(channels_last=True)


def set_test_time_shifts(tower: nn.Module, pixels: int) -> int:
    """Set the test-time shifts of a tower (a DDP wrapper is unwrapped); returns the previous value."""
    module = getattr(tower, "module", tower)
    if not isinstance(module, ConvTower):
        if pixels:
            raise TypeError(f"test-time shifts need a ConvTower, got {type(module).__name__}")
        return 0  # other towers have no test-time views
    previous = module.test_time_shifts
    module.test_time_shifts = pixels
    return previous
