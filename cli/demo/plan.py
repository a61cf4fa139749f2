"""What the demo publishes: one enrolment per unseen identity, then verify / identify arrivals and poison.

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
from pathlib import Path

from PIL import Image

from cli.demo.report import DemoCase
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


def build_cases(
    images: Sequence[Image.Image],
    labels: Sequence[int],
    class_names: Sequence[str],
    out_dir: Path,
    *,
    run_id: str,
    max_per_identity: int = 60,
    seed: int = 0,
) -> tuple[list[DemoCase], dict[str, Path]]:
    """Enrol the first image of each identity; the rest alternate verify (genuine or impostor) and identify.

    Returns the cases in publishing order (all enrolments first) and the enrolled image per subject.
    """
    rng = random.Random(seed)
    by_subject: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_subject.setdefault(subject_id(class_names[int(label)]), []).append(index)
    subjects = sorted(by_subject)
    enrol_cases, arrivals, enrolled = [], [], {}
    for subject in subjects:
        indices = by_subject[subject][: max_per_identity + 1]
        first = save_png(images[indices[0]], out_dir / "images" / subject / f"{indices[0]}.png")
        enrolled[subject] = first
        enrol_cases.append(DemoCase(f"{run_id}-enroll-{subject}", Op.ENROLL, first, subject, subject))
        for n, index in enumerate(indices[1:]):
            path = save_png(images[index], out_dir / "images" / subject / f"{index}.png")
            if n % 2 == 0:
                claimed = (
                    subject
                    if n % 4 == 0 or len(subjects) == 1
                    else rng.choice([s for s in subjects if s != subject])
                )
                arrivals.append(DemoCase(f"{run_id}-verify-{index}", Op.VERIFY, path, subject, claimed))
            else:
                arrivals.append(DemoCase(f"{run_id}-identify-{index}", Op.IDENTIFY, path, subject))
    rng.shuffle(arrivals)
    return enrol_cases + arrivals, enrolled


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
