"""Requests whose images the caller already decoded: the ingest worker's half of DESIGN's data flow.

The stream's workers decode and validate every image of a poll themselves (``decode + validate`` in
DESIGN.md): a corrupt image, a decompression bomb or an unknown format is refused in the worker and
goes to the DLQ without a round trip to Serve, and the work scales with worker processes instead of
queueing in the single pipeline replica that owns a batch. What crosses to Serve is a `PreparedBatch`:
the requests without their bytes, each image's digest, and the images resized for the served model as
one compact uint8 array (the pipeline finishes pre-processing with one vectorised `normalize`).

The worker learns the resize target (`InputSpec`) from the pipeline; a batch prepared for another
spec (the model was redeployed meanwhile) is refused with `StaleInputSpecError`, and the worker asks
again and re-prepares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twinstream.config import LimitsSettings
from twinstream.contracts import OPS_WITHOUT_IMAGE, ImageRequest, InputError
from twinstream.images.decode import decode_image, image_digest
from twinstream.images.preprocess import InputSpec, to_pixels


class StaleInputSpecError(RuntimeError):
    """The batch was prepared for another input spec than the served model's (it was redeployed)."""


@dataclass(frozen=True, slots=True, eq=False)
class PreparedBatch:
    """A poll's requests with their images decoded and resized for ``spec``.

    Attributes:
        requests: The requests, in order, with ``image`` emptied (the bytes stay in the worker).
        digests: Per request, the SHA-256 of its image bytes; ``""`` for ops without an image.
        pixels: uint8 array (M, H, W, C): the images of the requests that have a digest, in order.
        spec: The input spec ``pixels`` were made for.
        decode_s: Per request, seconds spent decoding and resizing its image.
    """

    requests: tuple[ImageRequest, ...]
    digests: tuple[str, ...]
    pixels: np.ndarray
    spec: InputSpec
    decode_s: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.requests)
        if len(self.digests) != n or len(self.decode_s) != n:
            raise ValueError("requests, digests and decode_s must have one entry per request")
        images = sum(1 for d in self.digests if d)
        shape = (images, self.spec.height, self.spec.width, self.spec.channels)
        if self.pixels.shape != shape or self.pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be uint8 {shape}, got {self.pixels.dtype} {self.pixels.shape}")


def prepare(
    requests: Sequence[ImageRequest], spec: InputSpec, limits: LimitsSettings
) -> tuple[PreparedBatch, dict[int, InputError]]:
    """Decode and resize every image of ``requests`` for ``spec``.

    Args:
        requests: Requests as decoded from Kafka records (image bytes attached).
        spec: The served model's input spec.
        limits: Byte and pixel limits and the format allow-list (`twinstream.images.decode.decode_image`).

    Returns:
        The batch of the requests that decoded (in order) and, by position in ``requests``, the
        `InputError` of each one that did not.
    """
    kept: list[ImageRequest] = []
    digests: list[str] = []
    rows: list[np.ndarray] = []
    decode_s: list[float] = []
    refused: dict[int, InputError] = {}
    for index, request in enumerate(requests):
        if request.op in OPS_WITHOUT_IMAGE:
            kept.append(request)
            digests.append("")
            decode_s.append(0.0)
            continue
        started = time.perf_counter()
        try:
            pixels = to_pixels(decode_image(request.image, limits, request.content_type), spec)
        except InputError as exc:
            refused[index] = exc
            continue
        kept.append(request.without_image())
        digests.append(image_digest(request.image))
        rows.append(pixels)
        decode_s.append(time.perf_counter() - started)
    empty = np.empty((0, spec.height, spec.width, spec.channels), dtype=np.uint8)
    batch = PreparedBatch(
        tuple(kept), tuple(digests), np.stack(rows) if rows else empty, spec, tuple(decode_s)
    )
    return batch, refused
