"""dlib's face-recognition ResNet (``anet_type`` of ``examples/dnn_face_recognition_ex.cpp``) in PyTorch.

The network maps a 150×150 RGB face chip (aligned as ``dlib.get_face_chip(img, shape, 150, 0.25)``
does) to a 128-d descriptor; dlib's own descriptors are un-normalised and two faces match when their
Euclidean distance is below 0.6. The layer-by-layer semantics follow dlib's sources:

* convolutions and pools with a stride other than 1 have no padding (dlib's default), stride-1 3×3
  convolutions pad by 1: 150 → conv 7×7/2 → 72 → max-pool 3×3/2 → 35 → 17 → 8 → 4 → 2;
* ``affine`` layers (batch norm frozen into ``gamma·x + beta``) follow every convolution;
* down-sampling blocks add a 2×2/2 average-pooled skip; dlib's ``add_prev`` adds tensors of different
  channel counts or sizes by zero-padding both to the larger shape (``tt::add``). This matters twice:
  the skip gains zero channels, and in the last two levels the block's output (3×3, then 1×1) is
  smaller than the pooled skip (4×4, then 2×2), so only its top-left corner receives the residual;
* a global average pool and a 256 → 128 fully connected layer without bias end the network.

Weights are read from dlib's own file (`twinstream.model.dlib_format`), never fetched; the parity test
(tests/unit/test_face_resnet.py) checks the port against dlib's ``compute_face_descriptor``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from twinstream.images.preprocess import InputSpec, Preprocessing
from twinstream.model.dlib_format import (
    Affine,
    Conv,
    DlibFormatError,
    DlibNetwork,
    FullyConnected,
    LayerKind,
    Pool,
    Relu,
    read_metric_network,
)
from twinstream.model.provenance import weights_provenance

__all__ = [
    "DLIB_INPUT_MEANS",
    "EMBEDDING_DIM",
    "INPUT_SIZE",
    "FaceResNet",
    "assign_dlib_weights",
    "face_resnet_layout",
    "load_face_resnet",
    "normalize_chips",
    "weights_provenance",
]

INPUT_SIZE = 150
EMBEDDING_DIM = 128
#: dlib's default channel means for ``input_rgb_image_sized``; the model file stores its own copy.
DLIB_INPUT_MEANS = (122.782, 117.001, 104.298)
#: (filters, residual blocks, first block down-samples) per level, input side first (alevel4..alevel0).
LEVELS: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)
_STEM_FILTERS = 32

_K = LayerKind
_STEM = (_K.CON, _K.AFFINE, _K.RELU, _K.MAX_POOL)
_BLOCK = (_K.TAG, _K.CON, _K.AFFINE, _K.RELU, _K.CON, _K.AFFINE)
_RESIDUAL_TAIL = (_K.ADD_PREV, _K.RELU)
_DOWN_TAIL = (_K.TAG, _K.SKIP, _K.AVG_POOL, _K.ADD_PREV, _K.RELU)
_HEAD = (_K.AVG_POOL, _K.FC)
#: The pools of ``anet_type`` in network order: (kind, window, stride, padding).
_POOLS = (
    (_K.MAX_POOL, (3, 3), (2, 2), (0, 0)),
    *(((_K.AVG_POOL, (2, 2), (2, 2), (0, 0)),) * sum(down for _, _, down in LEVELS)),
    (_K.AVG_POOL, (0, 0), (1, 1), (0, 0)),
)


def face_resnet_layout() -> tuple[LayerKind, ...]:
    """The layers of ``anet_type`` between input and loss, in network order (input side first)."""
    layout: list[LayerKind] = list(_STEM)
    for _, blocks, down in LEVELS:
        for i in range(blocks):
            layout += _BLOCK + (_DOWN_TAIL if down and i == 0 else _RESIDUAL_TAIL)
    return (*layout, *_HEAD)


def normalize_chips(
    chips: np.ndarray | torch.Tensor, means: tuple[float, float, float] = DLIB_INPUT_MEANS
) -> torch.Tensor:
    """dlib's input layer: uint8 RGB chips (N, H, W, 3) → float32 (N, 3, H, W), ``(p - mean) / 256``.

    The result is a channels-last view of the NHWC data, which is what `FaceResNet` runs on, so no
    copy is made to change layout.
    """
    pixels = torch.as_tensor(chips)
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB chips (N, H, W, 3), got {pixels.dtype} {tuple(pixels.shape)}")
    mean = torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels.permute(0, 3, 1, 2).float() - mean) / 256.0


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: zero-pad both tensors (channels, rows, columns at the end) and add."""
    if a.shape == b.shape:
        return a + b
    channels, rows, cols = (max(a.shape[d], b.shape[d]) for d in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class ChannelAffine(nn.Module):
    """dlib's ``affine_`` in convolutional mode: ``gamma[c] * x + beta[c]`` (a frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each channel of (N, C, H, W)."""
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class ResidualBlock(nn.Module):
    """``ares``/``ares_down``: conv-affine-relu-conv-affine, add the (pooled) input, relu."""

    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        stride, padding = (2, 0) if down else (1, 1)
        self.down = down
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.affine1 = ChannelAffine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.affine2 = ChannelAffine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual block on (N, C, H, W)."""
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_prev(y, skip))


class FaceResNet(nn.Module):
    """dlib's ``dlib_face_recognition_resnet_model_v1`` network; build it with `load_face_resnet`.

    Args:
        channels_last: Keep weights and activations in channels-last layout (faster on CPU).
    """

    input_mean: torch.Tensor  # (3,) RGB channel means of the input layer, from the model file

    def __init__(self, channels_last: bool = True) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(3, _STEM_FILTERS, 7, stride=2, padding=0)
        self.stem_affine = ChannelAffine(_STEM_FILTERS)
        blocks, channels = [], _STEM_FILTERS
        for filters, count, down in LEVELS:
            for i in range(count):
                blocks.append(ResidualBlock(channels, filters, down and i == 0))
                channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, EMBEDDING_DIM, bias=False)
        self.register_buffer("input_mean", torch.tensor(DLIB_INPUT_MEANS, dtype=torch.float32))
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Embed normalised chips (N, 3, 150, 150) (see `normalize_chips`).

        Args:
            x: Chips already normalised the dlib way.
            raw: Return dlib's own un-normalised descriptors instead of unit vectors.

        Returns:
            (N, 128) descriptors, L2-normalised unless ``raw``.
        """
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) input, got {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem_conv(x))), 3, 2)
        x = self.blocks(x).mean(dim=(2, 3))
        descriptors = self.fc(x)
        return descriptors if raw else F.normalize(descriptors, dim=1)

    def embed_chips(self, chips: np.ndarray | torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Normalise uint8 RGB chips (N, 150, 150, 3) with the file's channel means and embed them."""
        red, green, blue = self.input_mean.tolist()
        return self(normalize_chips(chips, (red, green, blue)), raw=raw)

    def dlib_ordered_modules(self) -> list[tuple[str, nn.Module]]:
        """The parameterised layers, named, in dlib's network order (input side first)."""
        named: list[tuple[str, nn.Module]] = [
            ("stem_conv", self.stem_conv),
            ("stem_affine", self.stem_affine),
        ]
        for i, block in enumerate(self.blocks):
            assert isinstance(block, ResidualBlock)
            named += [
                (f"blocks.{i}.{n}", getattr(block, n)) for n in ("conv1", "affine1", "conv2", "affine2")
            ]
        return [*named, ("fc", self.fc)]


def face_input_spec() -> InputSpec:
    """The input spec of this network: a 150×150 aligned RGB chip, normalised the dlib way.

    dlib's input layer subtracts the per-channel means and divides by 256; as an `InputSpec` (pixels
    scaled to [0, 1] first) that is mean ``m / 255`` and std ``256 / 255`` per channel.
    """
    return InputSpec(
        height=INPUT_SIZE, width=INPUT_SIZE, channels=3, invert=False,
        mean=tuple(m / 255.0 for m in DLIB_INPUT_MEANS), std=(256.0 / 255.0,) * 3,
        kind=Preprocessing.FACE_CHIP, chip_padding=0.25,
    )  # fmt: skip


def load_face_resnet(path: str | Path, channels_last: bool = True) -> FaceResNet:
    """Build `FaceResNet` in eval mode with the weights of dlib's ``.dat`` file at ``path``.

    Raises:
        DlibFormatError: The file is truncated, foreign, or holds another network.
    """
    model = FaceResNet(channels_last=channels_last)
    assign_dlib_weights(model, read_metric_network(path, face_resnet_layout()))
    return model.eval()


def assign_dlib_weights(model: FaceResNet, network: DlibNetwork) -> None:
    """Copy a parsed network into ``model``: every parameter and buffer, shapes and geometry checked.

    Raises:
        DlibFormatError: The parsed network does not have this model's layers, shapes, strides,
            paddings or pools (nothing is assigned then).
    """
    if (network.input.rows, network.input.cols) != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"input layer is {network.input.rows}x{network.input.cols}, expected 150")
    pools = tuple((p.kind, p.window, p.stride, p.padding) for p in network.layers if isinstance(p, Pool))
    if pools != _POOLS:
        raise DlibFormatError(f"pools {pools} differ from anet_type's {_POOLS}")
    if any(layer.disabled for layer in network.layers if isinstance(layer, Relu)):
        raise DlibFormatError("a disabled relu layer: not the network this module implements")
    parsed = [layer for layer in network.layers if isinstance(layer, Conv | Affine | FullyConnected)]
    targets = model.dlib_ordered_modules()
    if len(parsed) != len(targets):
        raise DlibFormatError(f"{len(parsed)} parameterised layers in the file, the model has {len(targets)}")
    state: dict[str, torch.Tensor] = {"input_mean": torch.tensor(network.input.means, dtype=torch.float32)}
    for (name, module), layer in zip(targets, parsed, strict=True):
        state.update({f"{name}.{key}": value for key, value in _tensors_for(name, module, layer).items()})
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    got = {key: tuple(value.shape) for key, value in state.items()}
    if got != expected:
        raise DlibFormatError(f"parameter shapes differ: file {got}, model {expected}")
    model.load_state_dict(state, strict=True)


def _tensors_for(
    name: str, module: nn.Module, layer: Conv | Affine | FullyConnected
) -> dict[str, torch.Tensor]:
    if isinstance(module, nn.Conv2d) and isinstance(layer, Conv):
        expected = (tuple(module.stride), tuple(module.padding), True, False)
        found = (layer.stride, layer.padding, layer.bias is not None, layer.fused_relu)
        if found != expected or layer.bias is None:
            raise DlibFormatError(
                f"{name}: (stride, padding, has bias, fused relu) is {found} in the file, {expected} here"
            )
        return {"weight": torch.from_numpy(layer.weight), "bias": torch.from_numpy(layer.bias)}
    if isinstance(module, ChannelAffine) and isinstance(layer, Affine) and not layer.disabled:
        return {"weight": torch.from_numpy(layer.gamma), "bias": torch.from_numpy(layer.beta)}
    if isinstance(module, nn.Linear) and isinstance(layer, FullyConnected) and layer.bias is None:
        return {"weight": torch.from_numpy(layer.weight)}
    raise DlibFormatError(
        f"{name}: the file has {type(layer).__name__} where the model has {type(module).__name__}"
    )
