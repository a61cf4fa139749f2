"""What the demo publishes: enrolments of unseen identities, then verify / identify arrivals and poison.

Cases are written as real image files (PNG, or the data set's own files) so that what goes on the
topic is exactly what any Kafka producer would send.
"""

from __future__ import annotations

import io
import random
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cli.demo.cases import DemoCase
from twinstream.contracts import Op, RejectReason


def png_bomb(width: int = 10_000, height: int = 5_000) -> bytes:
    """A valid 50-megapixel grayscale PNG of a few dozen KB: a decompression bomb."""
    raw_row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(raw_row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def poison_payloads(sample_png: bytes) -> list[tuple[bytes, dict[str, str], RejectReason]]:
    """Messages a healthy stream must refuse, each with the reason code it must be refused with."""
    rng = random.Random(7)
    return [
        (bytes(rng.getrandbits(8) for _ in range(2048)), {"op": "identify"}, RejectReason.UNDECODABLE_IMAGE),
        (sample_png[: len(sample_png) // 2], {"op": "identify"}, RejectReason.UNDECODABLE_IMAGE),
        (png_bomb(), {"op": "identify"}, RejectReason.TOO_MANY_PIXELS),
        (sample_png, {"op": "teleport"}, RejectReason.UNKNOWN_OP),
        (sample_png, {"op": "verify"}, RejectReason.MISSING_SUBJECT),
    ]


def subject_id(class_name: str) -> str:
    """A subject id the gallery accepts: Omniglot's "Angelic/character01" becomes "Angelic.character01"."""
    return re.sub(r"[^\w.:@+-]", ".", class_name, flags=re.ASCII)[:128]


def save_png(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


@dataclass(frozen=True)
class DemoPlan:
    """What the demo publishes and the photos it was cut from.

    Attributes:
        cases: Enrolments first, then the arrivals (shuffled).
        enrolled: Per subject, its first enrolment image.
        arrivals: Per subject, its test photos that were not enrolled (the arrivals' photos).
    """

    cases: list[DemoCase]
    enrolled: dict[str, Path]
    arrivals: dict[str, list[Path]]


def build_cases(
    images: Sequence[Image.Image],
    labels: Sequence[int],
    class_names: Sequence[str],
    out_dir: Path,
    *,
    run_id: str,
    enrol_images: int = 1,
    max_per_identity: int = 60,
    seed: int = 0,
) -> DemoPlan:
    """Enrol the first ``enrol_images`` photos of each identity; every later photo arrives three times.

    Each arriving photo is identified once and verified twice: claiming its own subject (genuine) and
    claiming another enrolled subject (impostor), so exactly half the claims are genuine: the balanced
    prior the model's probabilities are stated for.
    """
    rng = random.Random(seed)
    by_subject: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_subject.setdefault(subject_id(class_names[int(label)]), []).append(index)
    subjects = sorted(by_subject)
    enrol_cases: list[DemoCase] = []
    arrivals: list[DemoCase] = []
    enrolled: dict[str, Path] = {}
    photos: dict[str, list[Path]] = {}
    for subject in subjects:
        indices = by_subject[subject][: enrol_images + max_per_identity]
        for k, index in enumerate(indices[:enrol_images]):
            path = save_png(images[index], out_dir / "images" / subject / f"{index}.png")
            enrolled.setdefault(subject, path)
            enrol_cases.append(DemoCase(f"{run_id}-enroll-{subject}-{k}", Op.ENROLL, path, subject, subject))
        photos[subject] = []
        for index in indices[enrol_images:]:
            path = save_png(images[index], out_dir / "images" / subject / f"{index}.png")
            photos[subject].append(path)
            arrivals.append(DemoCase(f"{run_id}-identify-{index}", Op.IDENTIFY, path, subject))
            arrivals.append(DemoCase(f"{run_id}-verify-{index}-genuine", Op.VERIFY, path, subject, subject))
            others = [s for s in subjects if s != subject]
            if others:
                claimed = rng.choice(others)
                arrivals.append(
                    DemoCase(f"{run_id}-verify-{index}-impostor", Op.VERIFY, path, subject, claimed)
                )
    rng.shuffle(arrivals)
    return DemoPlan(enrol_cases + arrivals, enrolled, photos)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
