"""The face finder every path uses: dlib's finder and aligner (`twinstream.images.faces`) cut to a model.

The chip's geometry (size, padding) is the model's input spec; how faces are looked for (smallest face,
detection scale, the crop fallback) is a deployment setting (`FacesSettings`). Boxes are reported in the
original image's pixels, clipped to it; an image without a face is refused with ``no-face``; a group photo
answers for its ``max_faces`` largest faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from twinstream.config import FacesSettings
from twinstream.contracts import FaceBox, InputError, RejectReason
from twinstream.images.faces import AlignedFace, FaceAligner, FaceSettings, NoFaceError
from twinstream.images.preprocess import InputSpec, Preprocessing


@dataclass(frozen=True, slots=True)
class FoundChip:
    """One face: its box in the image (clipped) and its aligned chip."""

    box: FaceBox
    chip: np.ndarray


class FaceChipFinder:
    """`twinstream.images.prepared.FaceFinder` for a face-chip model.

    Args:
        spec: The model's input spec (``face-chip``: its size and padding cut the chips).
        settings: How faces are looked for.

    Raises:
        ValueError: If ``spec`` is not a face-chip spec.
    """

    def __init__(self, spec: InputSpec, settings: FacesSettings | None = None) -> None:
        if spec.kind is not Preprocessing.FACE_CHIP:
            raise ValueError(f"a face finder needs a face-chip input spec, got {spec.kind}")
        s = settings or FacesSettings()
        self.max_faces = s.max_faces
        finding = FaceSettings(
            min_face_px=s.min_face_px,
            max_detect_side=s.max_detect_side,
            crop_max_side=s.crop_max_side,
            allow_crop_fallback=s.allow_crop_fallback,
            chip_size=spec.height,
            chip_padding=spec.chip_padding,
        )
        self._aligner = FaceAligner.installed(finding)

    def find(self, image: Image.Image) -> list[FoundChip]:
        """Every face (up to ``max_faces``), largest first; raises `InputError` ``no-face``."""
        try:
            found = self._aligner.find(image)
        except NoFaceError as exc:
            raise InputError(RejectReason.NO_FACE, exc.detail) from None
        return [_found(face, image) for face in found[: self.max_faces]]

    def largest(self, image: Image.Image) -> tuple[FoundChip, int]:
        """The largest face and how many were found; raises `InputError` ``no-face``."""
        try:
            face, count = self._aligner.largest(image)
        except NoFaceError as exc:
            raise InputError(RejectReason.NO_FACE, exc.detail) from None
        return _found(face, image), count


def _found(face: AlignedFace, image: Image.Image) -> FoundChip:
    width, height = image.size
    b = face.box
    box = FaceBox(max(0, b.left), max(0, b.top), min(width, b.right), min(height, b.bottom))
    return FoundChip(box, np.asarray(face.chip))


class FaceFinders:
    """One face finder per face-chip spec, built on first use: what a process that prepares images for
    whichever model is served keeps (dlib's models load once; a new spec after a model switch gets its own).

    Args:
        settings: How faces are looked for.
    """

    def __init__(self, settings: FacesSettings | None = None) -> None:
        self._settings = settings or FacesSettings()
        self._by_spec: dict[InputSpec, FaceChipFinder] = {}

    def for_spec(self, spec: InputSpec) -> FaceChipFinder | None:
        """The finder for ``spec``, or None when the spec's images are resized, not cut into faces."""
        if spec.kind is not Preprocessing.FACE_CHIP:
            return None
        if spec not in self._by_spec:
            self._by_spec[spec] = FaceChipFinder(spec, self._settings)
        return self._by_spec[spec]
