"""Face data sets as the face tower sees them: every photo found, aligned and cut into its chip, once.

Training, evaluation and calibration of a face model run on the same chips the serving paths make
(`twinstream.images.face_finder`, the largest face of each photo). Cutting 400 AT&T photos takes tens of
seconds on one core, so the chips are cached on disk, keyed by the photos' bytes and the finder's settings.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from training.splits import Augmentation, DataSplits, ImageSet
from twinstream.config import FacesSettings
from twinstream.images.face_finder import FaceChipFinder
from twinstream.model.face_resnet import face_input_spec

#: Light augmentation for fine-tuning on chips: they are already aligned, so only small changes.
FACE_AUGMENTATION = Augmentation(rotate_deg=4.0, translate=0.03, scale=0.04, hflip=True)


def _cache_key(images: ImageSet, settings: FacesSettings) -> str:
    digest = hashlib.sha256(
        json.dumps(asdict(face_input_spec()) | settings.model_dump(), default=str).encode()
    )
    for image in images.images:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        digest.update(hashlib.sha256(buf.getvalue()).digest())
    return digest.hexdigest()[:24]


def face_chips(
    images: ImageSet,
    settings: FacesSettings | None = None,
    cache_dir: Path | None = None,
    what: str = "faces",
) -> ImageSet:
    """The same identities with each photo replaced by its largest face's aligned chip (RGB PIL images).

    Raises:
        twinstream.contracts.InputError: ``no-face`` for a photo where no face is found (and the crop
            fallback does not apply): a face data set must hold faces.
    """
    settings = settings or FacesSettings()
    path = (cache_dir / f"chips-{_cache_key(images, settings)}.npy") if cache_dir else None
    if path is not None and path.is_file():
        chips = np.load(path)
    else:
        finder = FaceChipFinder(face_input_spec(), settings)
        chips = np.stack([finder.largest(img)[0].chip for img in track(images.images, f"cutting {what}")])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, chips)
    return ImageSet([Image.fromarray(chip, mode="RGB") for chip in chips], images.labels, images.class_names)


def face_splits(
    splits: DataSplits, settings: FacesSettings | None = None, cache_dir: Path | None = None
) -> DataSplits:
    """``splits`` as aligned face chips, with the face tower's input spec and chip augmentation."""
    return replace(
        splits,
        spec=face_input_spec(),
        train=face_chips(splits.train, settings, cache_dir, "training faces"),
        val=face_chips(splits.val, settings, cache_dir, "validation faces"),
        test=face_chips(splits.test, settings, cache_dir, "test faces"),
        augmentation=FACE_AUGMENTATION,
        test_time_shifts=0,
    )


def default_cache_dir() -> Path:
    """Where chips are cached between runs (shared by every clone of this user)."""
    return Path.home() / ".cache" / "twinstream" / "face-chips"
