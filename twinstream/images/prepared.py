"""Requests whose images were decoded and cut for the model: what crosses to the matching pipeline.

Decoding and pre-processing happen where the bytes arrive and scale with processes there (decode and
validate): the ingest workers prepare each poll, and the Serve replica prepares HTTP
requests in a pool off its event loop. A corrupt image, a decompression bomb, an unknown format or a
photo without a face is refused there. What reaches the pipeline is a `PreparedBatch`: the requests
(enrolments keep their bytes, for the enrolment log; the others drop them), each image's digest, and
one compact uint8 array of tower inputs (the pipeline finishes with one vectorised `normalize`).

How an image becomes rows of that array is the model's pre-processing kind (`InputSpec.kind`):
``resize`` gives one row per image; ``face-chip`` gives one aligned chip per face, the largest face only
unless the request asks for every face (a group identify). The worker learns the spec from the
pipeline; a batch prepared for another spec (the live model changed) is refused with
`StaleInputSpecError`, and the worker asks again and re-prepares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from twinstream.config import LimitsSettings
from twinstream.contracts import OPS_WITHOUT_IMAGE, FaceBox, ImageRequest, InputError, Op, RejectReason
from twinstream.images.decode import decode_image, image_digest
from twinstream.images.preprocess import InputSpec, Preprocessing, to_pixels


class StaleInputSpecError(RuntimeError):
    """The batch was prepared for another input spec than the served model's (it was redeployed)."""


class FoundFace(Protocol):
    """One face found in an image: its box in the image and its aligned chip (H, W, 3) uint8."""

    @property
    def box(self) -> FaceBox: ...

    @property
    def chip(self) -> np.ndarray: ...


class FaceFinder(Protocol):
    """Finds and aligns the faces of an image (`twinstream.images.faces.FaceAligner`).

    Both methods raise `InputError` with reason ``no-face`` when the image holds none.
    """

    def find(self, image: Image.Image) -> Sequence[FoundFace]:
        """Every face, largest first."""
        ...

    def largest(self, image: Image.Image) -> tuple[FoundFace, int]:
        """The largest face and how many were found."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class PreparedBatch:
    """A batch of requests with their images decoded and cut for ``spec``.

    Attributes:
        requests: The requests, in order; only enrolments keep their image bytes.
        digests: Per request, the SHA-256 of its image bytes; ``""`` for ops without an image.
        pixels: uint8 array (M, H, W, C): every request's rows, in request order.
        spec: The input spec ``pixels`` were made for.
        decode_s: Per request, seconds spent decoding and cutting its image.
        rows: Per request, how many rows of ``pixels`` are its own (0 without an image, 1 per image
            for ``resize``, 1 per face kept for ``face-chip``).
        faces: Per request, the box of each of its rows (``face-chip`` only; empty otherwise).
        faces_found: Per request, how many faces its image held (``face-chip`` only).
    """

    requests: tuple[ImageRequest, ...]
    digests: tuple[str, ...]
    pixels: np.ndarray
    spec: InputSpec
    decode_s: tuple[float, ...]
    rows: tuple[int, ...] = ()
    faces: tuple[tuple[FaceBox, ...], ...] = ()
    faces_found: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.requests)
        if not self.rows:  # one row per image (resize)
            object.__setattr__(self, "rows", tuple(1 if d else 0 for d in self.digests))
        if not self.faces:
            object.__setattr__(self, "faces", ((),) * n)
            object.__setattr__(self, "faces_found", (0,) * n)
        per_request = (self.digests, self.decode_s, self.rows, self.faces, self.faces_found)
        if any(len(values) != n for values in per_request):
            raise ValueError("digests, decode_s, rows and faces must have one entry per request")
        shape = (sum(self.rows), self.spec.height, self.spec.width, self.spec.channels)
        if self.pixels.shape != shape or self.pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be uint8 {shape}, got {self.pixels.dtype} {self.pixels.shape}")


@dataclass(frozen=True, slots=True)
class _Cut:
    """One image's rows and, for faces, their boxes and how many faces the image held."""

    rows: np.ndarray
    boxes: tuple[FaceBox, ...] = ()
    found: int = 0


def _cut(image: Image.Image, request: ImageRequest, spec: InputSpec, faces: FaceFinder | None) -> _Cut:
    if spec.kind is Preprocessing.RESIZE:
        return _Cut(to_pixels(image, spec)[None])
    if faces is None:
        raise RuntimeError(f"a {spec.kind} model needs a face finder to prepare its images")
    if request.op is Op.IDENTIFY and request.all_faces:
        found = list(faces.find(image))
        return _Cut(np.stack([f.chip for f in found]), tuple(f.box for f in found), len(found))
    face, count = faces.largest(image)
    return _Cut(face.chip[None], (face.box,), count)


def prepare(
    requests: Sequence[ImageRequest],
    spec: InputSpec,
    limits: LimitsSettings,
    faces: FaceFinder | None = None,
) -> tuple[PreparedBatch, dict[int, InputError]]:
    """Decode and cut every image of ``requests`` for ``spec``.

    Args:
        requests: Requests with their image bytes attached.
        spec: The served model's input spec.
        limits: Byte and pixel limits and the format allow-list (`twinstream.images.decode.decode_image`).
        faces: The face finder, for ``face-chip`` specs.

    Returns:
        The batch of the requests that were prepared (in order) and, by position in ``requests``, the
        `InputError` of each one that was refused (including ``no-face``).
    """
    kept: list[ImageRequest] = []
    digests: list[str] = []
    chunks: list[np.ndarray] = []
    decode_s: list[float] = []
    cuts: list[_Cut] = []
    refused: dict[int, InputError] = {}
    for index, request in enumerate(requests):
        if request.op in OPS_WITHOUT_IMAGE:
            kept.append(request)
            digests.append("")
            decode_s.append(0.0)
            cuts.append(_Cut(np.empty((0, spec.height, spec.width, spec.channels), np.uint8)))
            continue
        started = time.perf_counter()
        try:
            cut = _cut(decode_image(request.image, limits, request.content_type), request, spec, faces)
        except InputError as exc:
            refused[index] = exc
            continue
        kept.append(request if request.op is Op.ENROLL else request.without_image())
        digests.append(image_digest(request.image))
        chunks.append(cut.rows)
        cuts.append(cut)
        decode_s.append(time.perf_counter() - started)
    empty = np.empty((0, spec.height, spec.width, spec.channels), dtype=np.uint8)
    batch = PreparedBatch(
        tuple(kept), tuple(digests), np.concatenate(chunks) if chunks else empty, spec, tuple(decode_s),
        rows=tuple(len(c.rows) for c in cuts), faces=tuple(c.boxes for c in cuts),
        faces_found=tuple(c.found for c in cuts),
    )  # fmt: skip
    return batch, refused


def merge(
    parts: Sequence[tuple[PreparedBatch, dict[int, InputError]]], sizes: Sequence[int]
) -> tuple[PreparedBatch, dict[int, InputError]]:
    """One batch from the batches of consecutive slices of a request list (``sizes``: each slice's
    length), refusals re-indexed by position in the whole list."""
    if not parts:
        raise ValueError("nothing to merge")
    batches = [batch for batch, _ in parts]
    refused: dict[int, InputError] = {}
    offset = 0
    for (_, errors), size in zip(parts, sizes, strict=True):
        refused.update({offset + i: exc for i, exc in errors.items()})
        offset += size
    merged = PreparedBatch(
        tuple(r for b in batches for r in b.requests), tuple(d for b in batches for d in b.digests),
        np.concatenate([b.pixels for b in batches]), batches[0].spec,
        tuple(t for b in batches for t in b.decode_s), rows=tuple(n for b in batches for n in b.rows),
        faces=tuple(f for b in batches for f in b.faces),
        faces_found=tuple(n for b in batches for n in b.faces_found),
    )  # fmt: skip
    return merged, refused


def no_face(detail: str) -> InputError:
    """The refusal of an image without a usable face."""
    return InputError(RejectReason.NO_FACE, detail)
