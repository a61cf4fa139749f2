"""The demo's class photo: every pasted student's face is found by the face finder the service uses."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from PIL import Image

from cli.demo.class_photo import CANVAS, compose_class_photo, pick_students


def _att_dir() -> Path:
    """TWINSTREAM_DATA_DIR's att_faces, else the first ``shared/datasets/att_faces`` above this file."""
    if os.environ.get("TWINSTREAM_DATA_DIR"):
        return Path(os.environ["TWINSTREAM_DATA_DIR"]) / "att_faces"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "datasets" / "att_faces").is_dir():
            return parent / "shared" / "datasets" / "att_faces"
    return Path("shared/datasets/att_faces")


ATT = _att_dir()


@pytest.fixture(scope="module")
def finder():  # type: ignore[no-untyped-def]
    try:
        import dlib  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"dlib is not importable ({exc}): pip install 'dlib-bin>=20.0'")
    if not ATT.is_dir():
        pytest.skip(f"AT&T faces not found at {ATT} (set TWINSTREAM_DATA_DIR to the shared datasets folder)")
    from twinstream.images.face_finder import FaceChipFinder
    from twinstream.model.face_resnet import face_input_spec

    return FaceChipFinder(face_input_spec())


@pytest.mark.parametrize("seed", range(6))
def test_every_student_pasted_on_the_class_photo_is_found_once(finder, seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    people = rng.sample(range(1, 41), 4 + seed % 3)
    students = [(f"s{p}", Image.open(ATT / f"s{p}" / f"{rng.randint(2, 10)}.pgm")) for p in people]
    photo = compose_class_photo(students, seed)
    assert photo.image.size == CANVAS and len(photo.seats) == len(students)
    found = finder.find(photo.image)
    assert len(found) == len(students)
    for seat in photo.seats:
        b = seat.box
        inside = [
            f
            for f in found
            if b.left <= (f.box.left + f.box.right) / 2 < b.right
            and b.top <= (f.box.top + f.box.bottom) / 2 < b.bottom
        ]
        assert len(inside) == 1, seat.subject


def test_students_are_picked_from_test_photos_only(tmp_path: Path):
    photos = {"a": [tmp_path / "a1.png"], "b": [], "c": [tmp_path / "c1.png", tmp_path / "c2.png"]}
    picked = pick_students(photos, n=5, seed=0)
    assert sorted(s for s, _ in picked) == ["a", "c"]
    assert all(path in photos[s] for s, path in picked)
    with pytest.raises(ValueError, match="2-6 students"):
        compose_class_photo([("a", Image.new("L", (92, 112)))])
