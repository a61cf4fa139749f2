"""The shared pre-processing that training and serving both apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from twinstream.images.preprocess import InputSpec, preprocess, preprocess_batch


def test_preprocess_resizes_inverts_and_normalises() -> None:
    spec = InputSpec(height=16, width=12, channels=1, invert=True, mean=0.5, std=0.5)
    white = Image.new("L", (40, 40), color=255)
    x = preprocess(white, spec)
    assert x.shape == (1, 16, 12) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, -1.0))  # white → 0 after inversion → (0-0.5)/0.5


def test_preprocess_converts_colour_to_the_spec_channels() -> None:
    rgb = Image.fromarray(np.full((20, 20, 3), 128, np.uint8), mode="RGB")
    gray = preprocess(rgb, InputSpec(16, 16, 1, False, 0.0, 1.0))
    assert gray.shape == (1, 16, 16)
    colour = preprocess(Image.new("L", (20, 20), 10), InputSpec(16, 16, 3, False, 0.0, 1.0))
    assert colour.shape == (3, 16, 16)


def test_preprocess_batch_stacks_and_handles_empty_batches() -> None:
    spec = InputSpec(16, 16, 1, False, 0.0, 1.0)
    imgs = [Image.new("L", (8, 8), v) for v in (0, 100, 200)]
    batch = preprocess_batch(imgs, spec)
    assert batch.shape == (3, 1, 16, 16)
    assert torch.equal(batch[1], preprocess(imgs[1], spec))
    assert preprocess_batch([], spec).shape == (0, 1, 16, 16)


def test_input_spec_rejects_impossible_values() -> None:
    with pytest.raises(ValueError, match="channels"):
        InputSpec(16, 16, 2, False, 0.0, 1.0)
    with pytest.raises(ValueError, match="std"):
        InputSpec(16, 16, 1, False, 0.0, 0.0)
