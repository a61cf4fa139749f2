"""The class-photo scene: unseen students' test photos pasted on one canvas, and how its answer scores.

A group identify (``faces: all``) is what an attendance camera sends: one photo, many faces. The demo
cannot ship a real class photo of its data set's people, so it composes one: a classroom wall and board,
two rows of students (the back row smaller and higher, as a camera sees them), each student's photo pasted
with feathered edges on a body drawn in a shirt colour. The photos are test photos, never the ones the
students were enrolled with. Where each photo went (its seat) is the ground truth the answer is scored on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from twinstream.contracts import Decision, FaceBox, MatchResult

#: Canvas size: at a long side of 960 the face finder detects at ×1.33, so faces from ~60 px are found.
CANVAS = (960, 600)
_WALL_TOP, _WALL_BOTTOM = (222, 211, 188), (196, 182, 158)
_SHIRTS = ((52, 86, 139), (140, 48, 52), (60, 110, 70), (110, 90, 140), (180, 140, 60), (70, 70, 70))


@dataclass(frozen=True, slots=True)
class Seat:
    """Where one student's photo was pasted on the canvas (canvas pixels)."""

    subject: str
    box: FaceBox


@dataclass(frozen=True)
class ClassPhoto:
    """The composed scene and its ground truth."""

    image: Image.Image
    seats: tuple[Seat, ...]


def _wall(size: tuple[int, int]) -> Image.Image:
    width, height = size
    wall = Image.new("RGB", size)
    draw = ImageDraw.Draw(wall)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(round(a + (b - a) * t) for a, b in zip(_WALL_TOP, _WALL_BOTTOM, strict=True)),
        )
    draw.rectangle(
        [width * 0.18, height * 0.06, width * 0.82, height * 0.42],
        fill=(38, 66, 52),
        outline=(120, 90, 60),
        width=8,
    )
    draw.rectangle([0, height * 0.88, width, height], fill=(122, 92, 66))
    return wall


def _feathered(size: tuple[int, int], radius: float) -> Image.Image:
    """An opaque ellipse a little larger than ``size`` (only the corners fade), blurred at the edge."""
    width, height = size
    mask = Image.new("L", size, 0)
    grow_x, grow_y = width * 0.05, height * 0.03
    ImageDraw.Draw(mask).ellipse([-grow_x, -grow_y, width + grow_x, height + grow_y], fill=255)
    return mask.filter(ImageFilter.GaussianBlur(radius))


def _rows(n: int) -> list[list[int]]:
    """Student indices per row, back row first (the back row takes the odd one)."""
    back = (n + 1) // 2
    return [list(range(back)), list(range(back, n))]


def compose_class_photo(
    students: Sequence[tuple[str, Image.Image]], seed: int = 0, size: tuple[int, int] = CANVAS
) -> ClassPhoto:
    """Paste each (subject, test photo) on a classroom canvas: back row small and high, front row large.

    Args:
        students: 2-6 subjects with one photo each (any mode; pasted as RGB).
        seed: Seeds sizes, jitter and shirt colours.
        size: Canvas (width, height).
    """
    if not 2 <= len(students) <= 6:
        raise ValueError(f"a class photo holds 2-6 students, got {len(students)}")
    rng = random.Random(seed)
    width, height = size
    canvas = _wall(size)
    draw = ImageDraw.Draw(canvas)
    seats: list[Seat] = []
    rows = _rows(len(students))
    slots = len(rows[0]) + len(rows[1])
    for row, (members, top, scale) in enumerate(
        zip(rows, (0.20, 0.44), ((1.2, 1.45), (1.7, 1.95)), strict=True)
    ):
        for k, index in enumerate(members):
            subject, photo = students[index]
            s = rng.uniform(*scale)
            w, h = round(photo.width * s), round(photo.height * s)
            centre = (2 * k + row + 1) / (slots + 1) * width + rng.uniform(-0.025, 0.025) * width
            left, y = round(centre - w / 2), round((top + rng.uniform(-0.03, 0.03)) * height)
            shirt = _SHIRTS[rng.randrange(len(_SHIRTS))]
            _body(draw, left, y, w, h, height, shirt)
            face = photo.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
            canvas.paste(face, (left, y), _feathered((w, h), max(2.0, 0.06 * w)))
            seats.append(Seat(subject, FaceBox(left, y, left + w, y + h)))
    draw.rectangle([0, round(height * 0.9), width, height], fill=(112, 80, 52))  # the front desks
    return ClassPhoto(canvas, tuple(seats))


def _body(
    draw: ImageDraw.ImageDraw, left: int, top: int, w: int, h: int, bottom: int, shirt: tuple[int, ...]
) -> None:
    """Neck and shoulders under a face pasted at (left, top) with size (w, h)."""
    cx = left + w / 2
    draw.rectangle([cx - 0.2 * w, top + 0.8 * h, cx + 0.2 * w, top + 1.05 * h], fill=(150, 140, 132))
    draw.ellipse([cx - 0.85 * w, top + 0.95 * h, cx + 0.85 * w, top + 1.55 * h], fill=shirt)
    draw.rectangle([cx - 0.85 * w, top + 1.25 * h, cx + 0.85 * w, bottom], fill=shirt)


def pick_students(photos: dict[str, list[Path]], n: int = 5, seed: int = 0) -> list[tuple[str, Path]]:
    """``n`` subjects (seeded) with one of their test photos each; ``photos`` holds no enrolment photo."""
    rng = random.Random(seed)
    candidates = sorted(s for s, paths in photos.items() if paths)
    return [(s, rng.choice(photos[s])) for s in rng.sample(candidates, min(n, len(candidates)))]


@dataclass(frozen=True)
class ClassPhotoScore:
    """How the group identify answered the class photo.

    Attributes:
        students: Who is in the photo.
        enrolled: Every enrolled subject (the class register).
        faces_found: Faces the service found in the photo.
        named: Per student, the name the service gave the face on their seat ("" when no face was
            answered there, ``UNKNOWN`` when the face was not matched).
        strays: Answers on no seat, or a second answer on one (there should be none).
        present: Subjects marked present (some face matched them).
    """

    students: tuple[str, ...]
    enrolled: tuple[str, ...]
    faces_found: int
    named: tuple[str, ...]
    strays: tuple[str, ...]
    present: tuple[str, ...]

    @property
    def identified(self) -> int:
        """Students whose face was found and named right."""
        return sum(a == b for a, b in zip(self.students, self.named, strict=True))

    @property
    def missed(self) -> tuple[str, ...]:
        """Students not named right, with what was said instead."""
        return tuple(
            f"{s} → {n or 'no face found'}" for s, n in zip(self.students, self.named, strict=True) if s != n
        )

    @property
    def wrongly_present(self) -> tuple[str, ...]:
        """Subjects marked present who are not in the photo."""
        return tuple(s for s in self.present if s not in self.students)

    @property
    def absent(self) -> tuple[str, ...]:
        """Enrolled subjects not marked present."""
        return tuple(s for s in self.enrolled if s not in self.present)

    @property
    def everyone_present(self) -> bool:
        """Every student named right, and nobody else marked present."""
        return self.identified == len(self.students) and not self.wrongly_present and not self.strays


def _centre_in(answer: FaceBox, seat: FaceBox) -> bool:
    cx, cy = (answer.left + answer.right) / 2, (answer.top + answer.bottom) / 2
    return seat.left <= cx < seat.right and seat.top <= cy < seat.bottom


def score_class_photo(
    photo: ClassPhoto, result: MatchResult | None, enrolled: Sequence[str]
) -> ClassPhotoScore:
    """Score a group identify's answer against where each student's photo was pasted."""
    faces = result.faces if result is not None else ()
    named = [""] * len(photo.seats)
    strays = []
    for face in faces:
        seat = next((i for i, s in enumerate(photo.seats) if _centre_in(face.box, s.box)), None)
        said = face.subject if face.decision is Decision.MATCH else str(face.decision)
        if seat is None or named[seat]:
            strays.append(f"{said} at ({face.box.left},{face.box.top})")
        else:
            named[seat] = said
    present = sorted({f.subject for f in faces if f.decision is Decision.MATCH})
    return ClassPhotoScore(
        tuple(s.subject for s in photo.seats),
        tuple(sorted(enrolled)),
        result.faces_found if result is not None else 0,
        tuple(named),
        tuple(strays),
        tuple(present),
    )
