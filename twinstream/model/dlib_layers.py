"""dlib DNN layers as parsed records, and the readers of each layer's serialized details.

One reader per layer type, following the type's ``serialize`` in ``dlib/dnn/layers.h``, ``input.h`` and
``loss.h`` field by field. Parameters come out as float32 numpy arrays already shaped the way PyTorch
holds them (conv weights OIHW, fully connected weights (outputs, inputs)). Each reader checks the
version string first, so a layer of another type or version fails with `DlibFormatError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from twinstream.model.dlib_stream import DlibReader

#: dlib's ``layer_mode`` and ``fc_bias_mode`` values.
_CONV_MODE = 0
_FC_HAS_BIAS = 0


class LayerKind(StrEnum):
    """A layer of the network's C++ type, as the layout given to the parser names it."""

    CON = "con"
    AFFINE = "affine"
    RELU = "relu"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    ADD_PREV = "add_prev"
    FC = "fc"
    TAG = "tag"
    SKIP = "skip"


@dataclass(frozen=True, slots=True, eq=False)
class Conv:
    """``con_``: cross-correlation with ``weight`` (out, in, rows, cols), then ``bias`` when present."""

    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    fused_relu: bool


@dataclass(frozen=True, slots=True, eq=False)
class Affine:
    """``affine_`` in convolutional mode: ``y = gamma[c] * x + beta[c]`` per channel."""

    gamma: np.ndarray
    beta: np.ndarray
    disabled: bool


@dataclass(frozen=True, slots=True)
class Relu:
    """``relu_`` (identity when ``disabled``)."""

    disabled: bool


@dataclass(frozen=True, slots=True)
class Pool:
    """``max_pool_``/``avg_pool_``; a window of (0, 0) pools each whole plane (``avg_pool_everything``)."""

    kind: LayerKind
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, slots=True)
class AddPrev:
    """``add_prev_``: adds a tagged earlier output (which tag is part of the C++ type, not the file)."""


@dataclass(frozen=True, slots=True, eq=False)
class FullyConnected:
    """``fc_``: ``y = x @ weight.T (+ bias)``, ``weight`` shaped (outputs, inputs) as in PyTorch."""

    weight: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True, slots=True)
class Tag:
    """``add_tag_layer``: marks an output for a later ``add_prev``/``skip`` (no parameters)."""


@dataclass(frozen=True, slots=True)
class Skip:
    """``add_skip_layer``: continues from the most recent matching tag's output (no parameters)."""


Layer = Conv | Affine | Relu | Pool | AddPrev | FullyConnected | Tag | Skip


@dataclass(frozen=True, slots=True)
class InputRgbSized:
    """``input_rgb_image_sized``: ``(pixel - mean[channel]) / 256`` on RGB images of rows × cols."""

    means: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True, slots=True)
class MetricLoss:
    """``loss_metric_``: the training margin and distance threshold (inference ignores both)."""

    margin: float
    distance_threshold: float


def read_layer_details(reader: DlibReader, kind: LayerKind) -> Layer:
    """Read the details of one computational layer of the given kind (not a tag or skip)."""
    return _DETAIL_READERS[kind](reader)


def _version(reader: DlibReader, layer: str, accepted: tuple[str, ...]) -> str:
    at = reader.position
    version = reader.string(f"{layer} version string")
    if version not in accepted:
        raise reader.error(f"expected a {layer} layer {accepted} (from byte {at}), found {version!r}")
    return version


def _skip_multipliers(reader: DlibReader, layer: str, count: int) -> None:
    # Learning-rate and weight-decay multipliers: training settings, irrelevant to inference.
    for _ in range(count):
        reader.float_(f"{layer} multiplier")


def _read_con(reader: DlibReader) -> Conv:
    version = _version(reader, "con", ("con_4", "con_5", "con_6"))
    params = reader.tensor("con params").ravel()
    num_filters = reader.int_("con num_filters")
    rows, cols = reader.int_("con nr"), reader.int_("con nc")
    stride = (reader.int_("con stride_y"), reader.int_("con stride_x"))
    padding = (reader.int_("con padding_y"), reader.int_("con padding_x"))
    filters = reader.alias_tensor("con filters")
    reader.alias_tensor("con biases")
    _skip_multipliers(reader, "con", 4)
    use_bias = reader.bool_("con use_bias") if version in ("con_5", "con_6") else True
    fused_relu = reader.bool_("con use_relu") if version == "con_6" else False
    if filters[0] != num_filters or filters[2:] != (rows, cols):
        raise reader.error(f"con filters {filters} disagree with {num_filters} filters of {rows}x{cols}")
    size = int(np.prod(filters))
    expected = size + (num_filters if use_bias else 0)
    if params.size != expected:
        raise reader.error(f"con params hold {params.size} floats, filters and biases need {expected}")
    # Views into ``params``, which the reader allocated for this layer alone: no copy needed.
    bias = params[size:] if use_bias else None
    return Conv(params[:size].reshape(filters), bias, stride, padding, fused_relu)


def _read_affine(reader: DlibReader) -> Affine:
    version = _version(reader, "affine", ("affine_", "affine_2"))
    params = reader.tensor("affine params").ravel()
    gamma, beta = reader.alias_tensor("affine gamma"), reader.alias_tensor("affine beta")
    mode = reader.int_("affine mode")
    disabled = reader.bool_("affine disabled") if version == "affine_2" else False
    if disabled:  # dlib clears a disabled layer's parameters: it is the identity
        return Affine(np.ones(0, np.float32), np.zeros(0, np.float32), disabled=True)
    if mode != _CONV_MODE or gamma != beta or gamma[2:] != (1, 1):
        raise reader.error(f"only convolutional-mode affine layers are supported (mode {mode}, {gamma})")
    channels = gamma[1]
    if params.size != 2 * channels:
        raise reader.error(f"affine params hold {params.size} floats, expected {2 * channels}")
    return Affine(params[:channels], params[channels:], disabled=False)


def _read_relu(reader: DlibReader) -> Relu:
    version = _version(reader, "relu", ("relu_", "relu_2"))
    return Relu(disabled=reader.bool_("relu disabled") if version == "relu_2" else False)


def _read_pool(kind: LayerKind) -> Callable[[DlibReader], Pool]:
    def read(reader: DlibReader) -> Pool:
        _version(reader, kind.value, (f"{kind.value}_2",))
        window = (reader.int_(f"{kind} nr"), reader.int_(f"{kind} nc"))
        stride = (reader.int_(f"{kind} stride_y"), reader.int_(f"{kind} stride_x"))
        padding = (reader.int_(f"{kind} padding_y"), reader.int_(f"{kind} padding_x"))
        return Pool(kind, window, stride, padding)

    return read


def _read_add_prev(reader: DlibReader) -> AddPrev:
    _version(reader, "add_prev", ("add_prev_",))
    return AddPrev()


def _read_fc(reader: DlibReader) -> FullyConnected:
    version = _version(reader, "fc", ("fc_2", "fc_3"))
    outputs, inputs = reader.uint("fc num_outputs"), reader.uint("fc num_inputs")
    params = reader.tensor("fc params").ravel()
    reader.alias_tensor("fc weights")
    reader.alias_tensor("fc biases")
    has_bias = reader.int_("fc bias_mode") == _FC_HAS_BIAS
    _skip_multipliers(reader, "fc", 4)
    if version == "fc_3":
        has_bias = reader.bool_("fc use_bias") and has_bias
    size = inputs * outputs
    if params.size != size + (outputs if has_bias else 0):
        raise reader.error(f"fc params hold {params.size} floats for {inputs} -> {outputs}")
    # dlib computes x (N, inputs) @ W (inputs, outputs); PyTorch holds W transposed.
    weight = params[:size].reshape(inputs, outputs).T.copy()
    return FullyConnected(weight, params[size:].copy() if has_bias else None)


_DETAIL_READERS: dict[LayerKind, Callable[[DlibReader], Layer]] = {
    LayerKind.CON: _read_con,
    LayerKind.AFFINE: _read_affine,
    LayerKind.RELU: _read_relu,
    LayerKind.MAX_POOL: _read_pool(LayerKind.MAX_POOL),
    LayerKind.AVG_POOL: _read_pool(LayerKind.AVG_POOL),
    LayerKind.ADD_PREV: _read_add_prev,
    LayerKind.FC: _read_fc,
}


def read_input_rgb_image_sized(reader: DlibReader) -> InputRgbSized:
    """Read ``input_rgb_image_sized``: the three channel means, then rows and columns."""
    _version(reader, "input_rgb_image_sized", ("input_rgb_image_sized",))
    red, green, blue = (reader.float_(f"input mean {c}") for c in "rgb")
    return InputRgbSized((red, green, blue), reader.uint("input rows"), reader.uint("input cols"))


def read_metric_loss(reader: DlibReader) -> MetricLoss:
    """Read ``loss_metric_`` (version 1 had margin 0.1 and threshold 0.75 hard-coded)."""
    version = _version(reader, "loss_metric", ("loss_metric_", "loss_metric_2"))
    if version == "loss_metric_":
        return MetricLoss(0.1, 0.75)
    return MetricLoss(reader.float_("loss margin"), reader.float_("loss distance threshold"))
