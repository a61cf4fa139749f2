"""Face finding and alignment on real AT&T photos pasted into scenes: what is found, where, what is not."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinstream.images.face_frames import FaceBox, FaceSettings, is_crop, plan_frame
from twinstream.images.face_models import SHAPE_PREDICTOR_5, installed_model_dir
from twinstream.images.faces import AlignedFace, FaceAligner, FoundBy, NoFaceError, NoFaceReason


def _att_dir() -> Path:
    """TWINSTREAM_DATA_DIR's att_faces, else the first ``shared/datasets/att_faces`` above this file."""
    if os.environ.get("TWINSTREAM_DATA_DIR"):
        return Path(os.environ["TWINSTREAM_DATA_DIR"]) / "att_faces"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "datasets" / "att_faces").is_dir():
            return parent / "shared" / "datasets" / "att_faces"
    return Path("shared/datasets/att_faces")


ATT = _att_dir()


class NoDetector:
    """Finds nothing: forces the crop rule's fallback path."""

    window_px = 80

    def detect(self, pixels: np.ndarray) -> list[FaceBox]:
        return []


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    try:
        import dlib  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"dlib is not importable ({exc}): pip install 'dlib-bin>=20.0'")
    try:
        built = FaceAligner.installed()
    except FileNotFoundError as exc:
        pytest.skip(f"face model files missing: {exc}")
    if not ATT.is_dir():
        pytest.skip(f"AT&T faces not found at {ATT} (set TWINSTREAM_DATA_DIR to the shared datasets folder)")
    return built


def _predictor() -> Path:
    return installed_model_dir() / SHAPE_PREDICTOR_5


def _att(person: int, photo: int) -> Image.Image:
    return Image.open(ATT / f"s{person}" / f"{photo}.pgm")


def _gradient(width: int, height: int) -> Image.Image:
    ramp = np.linspace(40, 220, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    return Image.fromarray(ramp.astype(np.uint8))


def _paste(
    canvas: Image.Image, face: Image.Image, width: int, at: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Paste an AT&T crop scaled to ``width`` px wide; returns the region (left, top, right, bottom)."""
    scaled = face.convert("RGB").resize((width, round(width * 112 / 92)), Image.Resampling.BILINEAR)
    canvas.paste(scaled, at)
    return at[0], at[1], at[0] + scaled.width, at[1] + scaled.height


def _inside(box: FaceBox, region: tuple[int, int, int, int]) -> bool:
    centre_x, centre_y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    return region[0] <= centre_x <= region[2] and region[1] <= centre_y <= region[3]


def _no_face(aligner: FaceAligner, image: Image.Image) -> NoFaceError:
    with pytest.raises(NoFaceError) as info:
        aligner.find(image)
    return info.value


def test_photos_without_a_face_are_refused(aligner: FaceAligner) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    for photo in (_gradient(640, 480), noise, Image.new("L", (1200, 900), 128)):
        error = _no_face(aligner, photo)
        assert error.reason is NoFaceReason.NO_FACE_FOUND
        assert f"{photo.width}x{photo.height} image" in str(error)


def test_three_faces_are_found_largest_first_where_they_were_pasted(aligner: FaceAligner) -> None:
    scene = _gradient(800, 600)
    middle = _paste(scene, _att(7, 1), 170, (360, 300))
    large = _paste(scene, _att(3, 1), 230, (40, 60))
    small = _paste(scene, _att(12, 1), 120, (620, 80))

    faces = aligner.find(scene)

    assert [f.found_by for f in faces] == [FoundBy.DETECTED] * 3
    assert [f.box.area for f in faces] == sorted((f.box.area for f in faces), reverse=True)
    for face, region in zip(faces, (large, middle, small), strict=True):
        assert _inside(face.box, region), (face.box, region)
        assert 0.55 <= face.box.width / (region[2] - region[0]) <= 1.1
        assert all(_inside(FaceBox(x, y, x, y, None), region) for x, y in face.landmarks)
    best, count = aligner.largest(scene)
    assert count == 3
    assert best.box == faces[0].box
    assert np.array_equal(best.chip, faces[0].chip)


def test_a_large_photo_is_downscaled_for_detection_and_its_face_mapped_back(aligner: FaceAligner) -> None:
    photo = _gradient(2600, 1950)
    region = _paste(photo, _att(5, 2), 700, (1500, 600))
    assert plan_frame(2600, 1950, aligner.settings, 80).detect_width == 1280

    face, count = aligner.largest(photo)

    assert count == 1
    assert _inside(face.box, region)
    assert 0.55 <= face.box.width / 700 <= 1.1


def test_landmarks_and_chips_are_dlibs_own_on_the_full_photo(aligner: FaceAligner) -> None:
    import dlib

    predictor = dlib.shape_predictor(str(_predictor()))
    for size, side in (((640, 480), 150), ((1600, 1200), 600)):  # the second is down-scaled to detect
        photo = _gradient(*size)
        _paste(photo, _att(9, 3), side, (size[0] // 3, size[1] // 5))
        face, _ = aligner.largest(photo)

        box, full = face.box, np.asarray(photo)
        shape = predictor(full, dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1))
        assert face.landmarks == tuple((p.x, p.y) for p in shape.parts())
        assert np.array_equal(face.chip, dlib.get_face_chip(full, shape, size=150, padding=0.25))


def test_an_image_one_pixel_wide_is_refused_as_too_small(aligner: FaceAligner) -> None:
    for image in (Image.new("L", (1, 200), 90), Image.new("RGB", (39, 39))):
        error = _no_face(aligner, image)
        assert error.reason is NoFaceReason.IMAGE_TOO_SMALL
        assert f"{image.width}x{image.height} image" in error.detail
        assert "40px" in error.detail


def test_a_face_below_the_findable_size_on_a_large_canvas_is_refused(aligner: FaceAligner) -> None:
    # 1024x768 is detected at x1.25 (the 1280 px cap), so the smallest promised face is ceil(80 / 1.25).
    frame = plan_frame(1024, 768, aligner.settings, 80)
    assert frame.smallest_face(80, aligner.settings) == 64
    tiny, found = _gradient(1024, 768), _gradient(1024, 768)
    _paste(tiny, _att(3, 1), 30, (400, 300))
    _paste(found, _att(3, 1), 90, (400, 300))

    error = _no_face(aligner, tiny)

    assert error.reason is NoFaceReason.NO_FACE_FOUND
    assert "no face of 64px or more in the 1024x768 image" in error.detail
    assert aligner.largest(found)[0].found_by is FoundBy.DETECTED


def test_an_att_crop_is_detected_inside_its_border(aligner: FaceAligner) -> None:
    crop = _att(1, 1)
    face, count = aligner.largest(crop)

    assert (face.found_by, count) == (FoundBy.DETECTED, 1)
    assert 0 < face.box.width <= crop.width + 10
    assert all(0 <= x < crop.width and 0 <= y < crop.height for x, y in face.landmarks)


def test_a_crop_without_detection_falls_back_to_the_median_box_but_a_photo_is_refused(
    aligner: FaceAligner,
) -> None:
    blind = FaceAligner(_predictor(), detector=NoDetector())
    crop = _att(2, 4)

    face, count = blind.largest(crop)

    assert (face.found_by, count) == (FoundBy.CROP_FALLBACK, 1)
    assert face.box == FaceBox(8, 28, 83, 109, None)  # (0.09, 0.25, 0.90, 0.97) of 92 x 112
    refusing = FaceAligner(_predictor(), FaceSettings(allow_crop_fallback=False), NoDetector())
    assert _no_face(refusing, crop).reason is NoFaceReason.NO_FACE_FOUND
    photo = _gradient(640, 480)
    _paste(photo, crop, 200, (200, 100))
    assert "640x480 image" in _no_face(blind, photo).detail


def test_chips_are_150_by_150_rgb_uint8_and_read_only(aligner: FaceAligner) -> None:
    faces: list[AlignedFace] = [aligner.largest(_att(4, 1))[0], aligner.largest(_att(4, 1).convert("RGB"))[0]]
    for face in faces:
        assert face.chip.shape == (150, 150, 3)
        assert face.chip.dtype == np.uint8
        assert not face.chip.flags.writeable
        assert len(face.landmarks) == 5
    assert np.array_equal(faces[0].chip, faces[1].chip)  # a gray image and its RGB copy align the same


def test_a_small_image_without_a_face_is_still_a_crop_and_falls_back(aligner: FaceAligner) -> None:
    # The crop rule's price, by design: a face-sized image is trusted to be a face crop.
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (112, 92), dtype=np.uint8))
    face, count = aligner.largest(noise)
    assert (face.found_by, count, face.box.score) == (FoundBy.CROP_FALLBACK, 1, None)
    assert face.chip.shape == (150, 150, 3)


def test_the_aligner_pickles_before_and_after_first_use(aligner: FaceAligner) -> None:
    fresh = FaceAligner(_predictor(), FaceSettings(min_face_px=50))
    before = pickle.loads(pickle.dumps(fresh))
    reference = fresh.largest(_att(6, 2))[0]
    after = pickle.loads(pickle.dumps(fresh))

    for copy in (before, after):
        assert copy.settings == FaceSettings(min_face_px=50)
        again = copy.largest(_att(6, 2))[0]
        assert again.box == reference.box
        assert np.array_equal(again.chip, reference.chip)


def test_no_face_error_survives_pickling_with_its_reason() -> None:
    error = pickle.loads(pickle.dumps(NoFaceError(NoFaceReason.IMAGE_TOO_SMALL, "the 1x200 image ...")))
    assert (error.reason, error.detail) == (NoFaceReason.IMAGE_TOO_SMALL, "the 1x200 image ...")
    assert str(error) == "image-too-small: the 1x200 image ..."


def test_frames_upsample_small_images_border_crops_and_downscale_large_photos() -> None:
    settings = FaceSettings()
    crop = plan_frame(92, 112, settings, 80)
    assert (crop.is_crop, crop.border_x, crop.border_y) == (True, 23, 28)
    assert (crop.detect_width, crop.detect_height) == (276, 336)  # (92 + 46) x 2, (112 + 56) x 2
    vga = plan_frame(640, 480, settings, 80)
    assert (vga.is_crop, vga.detect_width, vga.detect_height, vga.smallest_face(80, settings)) == (
        False, 1280, 960, 40,
    )  # fmt: skip
    phone = plan_frame(4032, 3024, settings, 80)
    assert (phone.detect_width, phone.detect_height) == (1280, 960)
    assert phone.smallest_face(80, settings) == math.ceil(80 * 4032 / 1280)
    box = phone.to_original(FaceBox(100, 200, 300, 400, 1.0))
    assert (box.left, box.top, box.right, box.bottom) == (315, 630, 945, 1260)


def test_only_small_face_shaped_images_are_crops() -> None:
    settings = FaceSettings()
    assert is_crop(92, 112, settings)
    assert is_crop(256, 200, settings)
    assert not is_crop(257, 200, settings)  # longer than crop_max_side
    assert not is_crop(40, 200, settings)  # a strip, taller than 2:1


def test_settings_refuse_impossible_values() -> None:
    for bad in (
        {"min_face_px": 4},
        {"crop_border": 1.5},
        {"fallback_box": (0.5, 0.0, 0.4, 1.0)},
        {"chip_size": 8},
    ):
        with pytest.raises(ValueError):
            FaceSettings(**bad)  # type: ignore[arg-type]
