"""Parse a serialized dlib DNN with a ``loss_metric`` head into its layers' parameters (numpy arrays).

dlib serializes a network as nested objects (``dlib/dnn/core.h``): ``add_loss_layer`` writes its
version, the loss and then its sub-network; each ``add_layer`` writes its version, its sub-network, then
its own layer details and training state; ``add_tag_layer`` and ``add_skip_layer`` write a version and
their sub-network only. The stream therefore holds the wrappers' versions from the outermost layer
inwards, then the input layer, then the layers' details from the input outwards. Tags and skips leave
no name in the stream, so the caller passes the network's layout (the kinds in network order, as the C++
type spells them) and the parser checks every layer against it.

Supported layer versions are those dlib 19.x/20.x read: ``con_4..6``, ``affine_``/``affine_2``,
``relu_``/``relu_2``, ``max_pool_2``, ``avg_pool_2``, ``add_prev_``, ``fc_2``/``fc_3``,
``input_rgb_image_sized``, ``loss_metric_``/``loss_metric_2``. Training-form batch norm (``bn_con2``)
is refused: dlib converts it to ``affine_`` when it loads such a file, which this parser does not do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinstream.model.dlib_layers import (
    AddPrev,
    Affine,
    Conv,
    FullyConnected,
    InputRgbSized,
    Layer,
    LayerKind,
    MetricLoss,
    Pool,
    Relu,
    Skip,
    Tag,
    read_input_rgb_image_sized,
    read_layer_details,
    read_metric_loss,
)
from twinstream.model.dlib_stream import DlibFormatError, DlibReader

__all__ = [
    "AddPrev",
    "Affine",
    "Conv",
    "DlibFormatError",
    "DlibNetwork",
    "FullyConnected",
    "InputRgbSized",
    "Layer",
    "LayerKind",
    "MetricLoss",
    "Pool",
    "Relu",
    "Skip",
    "Tag",
    "parse_metric_network",
    "read_metric_network",
]

_STRUCTURAL = (LayerKind.TAG, LayerKind.SKIP)


@dataclass(frozen=True, slots=True)
class DlibNetwork:
    """A parsed network: input layer, layers in network order (one per layout entry), loss."""

    input: InputRgbSized
    layers: tuple[Layer, ...]
    loss: MetricLoss


def read_metric_network(path: str | Path, layout: Sequence[LayerKind]) -> DlibNetwork:
    """Read and parse a dlib ``loss_metric`` network file; see `parse_metric_network`."""
    path = Path(path)
    return parse_metric_network(path.read_bytes(), layout, source=str(path))


def parse_metric_network(data: bytes, layout: Sequence[LayerKind], source: str = "<bytes>") -> DlibNetwork:
    """Parse ``add_loss_layer<loss_metric_, layout...<input_rgb_image_sized>>`` from ``data``.

    Args:
        data: The serialized network (the whole file).
        layout: The layers between input and loss in network order (input side first); the first
            must be a computational layer (not a tag or skip), as in the networks read here.
        source: Name used in error messages.

    Returns:
        The network's layers, ``layers[i]`` parsed as ``layout[i]``.

    Raises:
        DlibFormatError: The bytes are truncated, run on past the network, or do not match the
            layout (a foreign file or another network).
        ValueError: The layout itself is unusable.
    """
    if not layout or layout[0] in _STRUCTURAL:
        raise ValueError("layout must start with a computational layer right above the input")
    reader = DlibReader(data, source)
    _wrapper_version(reader, "add_loss_layer", (1,))
    loss = read_metric_loss(reader)
    versions = [0] * len(layout)
    for i in reversed(range(len(layout))):  # the outermost wrapper's version comes first
        versions[i] = _wrapper_version(reader, _wrapper_name(layout[i], i == 0), _accepted(layout[i], i == 0))
    network_input = read_input_rgb_image_sized(reader)
    layers: list[Layer] = []
    for i, kind in enumerate(layout):
        if kind in _STRUCTURAL:
            layers.append(Tag() if kind is LayerKind.TAG else Skip())
            continue
        layers.append(read_layer_details(reader, kind))
        _skip_training_state(reader, versions[i], on_input=i == 0)
    if reader.remaining:
        raise reader.error(f"{reader.remaining} unexpected bytes after the network")
    return DlibNetwork(input=network_input, layers=tuple(layers), loss=loss)


def _wrapper_name(kind: LayerKind, on_input: bool) -> str:
    if kind in _STRUCTURAL:
        return f"add_{kind}_layer"
    return f"add_layer ({kind}{' on the input layer' if on_input else ''})"


def _accepted(kind: LayerKind, on_input: bool) -> tuple[int, ...]:
    # Versions dlib's deserialize accepts (core.h); an add_layer sitting on the input layer differs.
    if kind in _STRUCTURAL:
        return (1,)
    return (2, 3) if on_input else (1, 2)


def _wrapper_version(reader: DlibReader, name: str, accepted: tuple[int, ...]) -> int:
    at = reader.position
    version = reader.int_(f"{name} version")
    if version not in accepted:
        raise DlibFormatError(
            f"{reader.source}: at byte {at}: {name} version {version}, expected one of {accepted}"
        )
    return version


def _skip_training_state(reader: DlibReader, version: int, on_input: bool) -> None:
    """Read past the flags and gradient/output buffers an ``add_layer`` stores after its details."""
    for flag in ("this_layer_setup_called", "gradient_input_is_stale", "output_and_gradient_disabled"):
        reader.bool_(flag)
    reader.tensor("x_grad")
    reader.tensor("cached_output")
    if on_input:
        reader.tensor("grad_final")
        if version >= 3:
            reader.uint("sample_expansion_factor")
    elif version >= 2:
        reader.tensor("params_grad")
