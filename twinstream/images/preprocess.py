"""Image → tensor pre-processing shared by training and serving, so both see identical inputs.

Every data set yields PIL images; training and the serving embedder both call `preprocess` on them.
Augmentation is a training-only step applied *after* this function (see ``training.augment``).

torch is imported by the two functions that return tensors only: the ingest workers use `to_pixels`
and need neither its import time nor its memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


class Preprocessing(StrEnum):
    """How an image becomes the tower's input (a model property, recorded in its manifest).

    ``resize``: the whole image, converted and resized (digits, Omniglot, tight crops).
    ``face-chip``: faces found by dlib's detector, aligned on 5 landmarks into a square chip
    (`twinstream.images.faces`); an image without a face is refused with ``no-face``.
    """

    RESIZE = "resize"
    FACE_CHIP = "face-chip"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What the tower expects: how the image is cut, its size, channels and normalisation.

    Attributes:
        height: Input height in pixels.
        width: Input width in pixels.
        channels: 1 (grayscale, PIL mode ``L``) or 3 (``RGB``).
        invert: Whether to flip intensities (``1 - x``) so strokes are bright on a dark ground.
        mean: Subtracted after scaling to [0, 1] (and inverting); one value, or one per channel.
        std: Divided by after subtracting the mean; one value, or one per channel.
        kind: The pre-processing kind (`Preprocessing`).
        chip_padding: ``face-chip`` only: the margin around the aligned face, as dlib's
            ``get_face_chip(padding=…)``.
    """

    height: int
    width: int
    channels: int
    invert: bool
    mean: float | tuple[float, ...]
    std: float | tuple[float, ...]
    kind: Preprocessing = Preprocessing.RESIZE
    chip_padding: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Preprocessing(self.kind))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):  # per channel (a manifest's JSON gives a list)
                if len(value) != self.channels:
                    raise ValueError(f"{name} needs one value per channel ({self.channels}), got {value}")
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input must be at least 8x8, got {self.height}x{self.width}")
        if min(np.atleast_1d(self.std)) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if self.kind is Preprocessing.FACE_CHIP and (self.channels != 3 or self.height != self.width):
            raise ValueError("face chips are square RGB images")


def to_pixels(img: Image.Image, spec: InputSpec) -> np.ndarray:
    """Convert mode and resize (antialiased bilinear): uint8 pixels of shape (H, W, C).

    The compact half of pre-processing: the ingest worker sends these (a quarter of the float bytes)
    and the pipeline finishes a whole batch at once with `normalize`.
    """
    mode = "L" if spec.channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    if img.size != (spec.width, spec.height):
        img = img.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(spec.height, spec.width, spec.channels)


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels (..., H, W, C) → the tower's float32 input (..., C, H, W), contiguous.

    Scale to [0, 1], invert if the spec says so, subtract the mean and divide by the std: the same
    float32 operations for one image or a stacked batch, so both give bit-identical inputs.
    """
    arr: np.ndarray = pixels.astype(np.float32) / np.float32(255.0)
    if spec.invert:
        arr = np.float32(1.0) - arr
    # Per-channel values broadcast over the last (channel) axis of (..., H, W, C).
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(np.moveaxis(arr, -1, -3))


def preprocess(img: Image.Image, spec: InputSpec) -> torch.Tensor:
    """Turn one PIL image into the tower's input.

    Args:
        img: Any Pillow image (mode converted as needed).
        spec: The input spec from the model manifest.

    Returns:
        A float32 tensor of shape (C, H, W).
    """
    import torch

    return torch.from_numpy(normalize(to_pixels(img, spec), spec))


def preprocess_batch(imgs: Sequence[Image.Image], spec: InputSpec) -> torch.Tensor:
    """Pre-process a batch of PIL images.

    Args:
        imgs: The images, any modes and sizes.
        spec: The input spec from the model manifest.

    Returns:
        A float32 tensor of shape (N, C, H, W); (0, C, H, W) for an empty batch.
    """
    import torch

    if not imgs:
        return torch.empty((0, spec.channels, spec.height, spec.width), dtype=torch.float32)
    return torch.from_numpy(normalize(np.stack([to_pixels(img, spec) for img in imgs]), spec))
