"""dlib's face model files (found in the installed package, never downloaded) and the face-detector port.

The files come from PyPI's ``face-recognition-models`` 0.3.0 (Adam Geitgey's MIT-licensed packaging of
Davis King's dlib-models, which their author released into the public domain). Its 68-point landmark
predictor is deliberately not named here: its iBUG 300-W training data restricts commercial use. The
package is located with ``importlib`` and never imported: its ``__init__`` needs ``pkg_resources``, which this
environment lacks.

dlib objects cannot be pickled, so the detector here builds its dlib object on first use and drops it
when pickled: a `HogFaceDetector` can cross to Ray actors and worker processes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from twinstream.images.face_frames import FaceBox

#: The 5-point landmark predictor (eye corners and nose base), trained on Davis King's own annotations.
SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
#: dlib's 128-d face-recognition ResNet (input: a 150×150 chip from ``get_face_chip``).
RECOGNITION_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
#: The mmod CNN face detector (measured, not used by default: see `twinstream.images.faces`).
MMOD_DETECTOR = "mmod_human_face_detector.dat"


def installed_model_dir() -> Path:
    """The folder holding the ``face-recognition-models`` files.

    Raises:
        FileNotFoundError: The package is not installed or has no ``models`` folder.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        "face-recognition-models is not installed (pip install 'face-recognition-models>=0.3'); "
        f"searched {locations or 'no package locations'}"
    )


class FaceDetector(Protocol):
    """Finds face boxes in a uint8 gray image, in that image's pixels. Must be picklable."""

    #: The smallest box side the detector reports at scale 1; the frame up-samples so
    #: ``min_face_px`` reaches it.
    window_px: int

    def detect(self, pixels: np.ndarray) -> list[FaceBox]:
        """All faces in ``pixels`` (uint8, H × W), any order."""
        ...


class HogFaceDetector:
    """dlib's ``get_frontal_face_detector()`` (HOG + linear SVM, 5 poses, no model file).

    Args:
        threshold: Added to the detector's decision threshold (``adjust_threshold``); 0 is dlib's.
    """

    #: dlib's HOG face detector scans an 80 × 80 window; its smallest boxes are 73-80 px.
    window_px = 80

    def __init__(self, threshold: float = 0.0) -> None:
        self._threshold = threshold
        self._hog: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"threshold": self._threshold}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._threshold = state["threshold"]
        self._hog = None

    def detect(self, pixels: np.ndarray) -> list[FaceBox]:
        if self._hog is None:
            import dlib

            self._hog = dlib.get_frontal_face_detector()
        # Up-sampling is the frame's job (`plan_frame`), done once with Pillow: hence 0 here.
        rects, scores, _poses = self._hog.run(pixels, 0, self._threshold)
        return [
            FaceBox(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1, float(score))
            for rect, score in zip(rects, scores, strict=True)
        ]
