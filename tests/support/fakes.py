"""Stand-ins for unit tests only (never what an issue's "done" rests on): an in-memory gallery, a manifest."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from services.gallery.milvus_gallery import cosine_to_euclidean
from services.matching.ports import Enrollment, Hit, SubjectKey
from twinstream.images.preprocess import InputSpec
from twinstream.model.artifact import Manifest
from twinstream.model.calibration import PlattMap, ScoreCalibration
from twinstream.model.impostor import ImpostorModel


class InMemoryGallery:
    """The `services.matching.ports.Gallery` contract over a dict: image id → (tenant, subject, vector)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, tuple[float, ...]]] = {}

    def enroll(self, items: Sequence[Enrollment]) -> list[bool]:
        fresh = []
        for item in items:
            fresh.append(item.image_id not in self.rows)
            self.rows[item.image_id] = (item.tenant, item.subject, tuple(np.asarray(item.vector).tolist()))
        return fresh

    def vectors_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, np.ndarray]:
        out: dict[SubjectKey, list[tuple[float, ...]]] = {}
        for tenant, subject, vector in self.rows.values():
            if (tenant, subject) in keys:
                out.setdefault((tenant, subject), []).append(vector)
        return {key: np.asarray(vectors, np.float32) for key, vectors in out.items()}

    def search(self, tenant: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]:
        answers = []
        for query in np.asarray(vectors, np.float32):
            best: dict[str, float] = {}
            for owner, subject, vector in self.rows.values():
                if owner == tenant:
                    distance = float(cosine_to_euclidean(float(np.dot(query, vector))))
                    best[subject] = min(distance, best.get(subject, 2.0))
            ranked = sorted(best.items(), key=lambda kv: (kv[1], kv[0]))[:top_k]
            answers.append([Hit(subject, distance) for subject, distance in ranked])
        return answers

    def delete(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        counts = dict.fromkeys(keys, 0)
        for image_id, (tenant, subject, _) in list(self.rows.items()):
            if (tenant, subject) in counts:
                counts[(tenant, subject)] += 1
                del self.rows[image_id]
        return counts

    def subjects(self, tenant: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for owner, subject, _ in self.rows.values():
            if owner == tenant:
                counts[subject] = counts.get(subject, 0) + 1
        return dict(sorted(counts.items()))

    def size(self, tenant: str) -> int:
        return sum(1 for owner, _, _ in self.rows.values() if owner == tenant)

    def flush(self) -> None:
        """Nothing is pending in memory."""


SPEC = InputSpec(height=16, width=16, channels=1, invert=False, mean=0.0, std=1.0)
#: p1(d) = sigmoid(10 (0.5 - d)): even odds at distance 0.5.
CALIBRATION = ScoreCalibration(PlattMap(intercept=5.0, slope=10.0))
#: One probe whose impostors lie between 0.6 and 1.4, the closest 1 % below 0.6 (a steep power-law tail).
IMPOSTORS = ImpostorModel(
    levels=(0.01, 0.1, 0.5, 1.0), quantiles=((0.6, 0.8, 1.0, 1.4),), tail_exponents=(8.0,)
)


def make_manifest(**fields: object) -> Manifest:
    """A complete manifest with test values; ``fields`` override any of them."""
    values: dict[str, object] = {
        "version": "vtest", "architecture": "conv4", "input": SPEC, "embedding_dim": 4, "threshold": 0.5,
        "target_far": 1e-3, "calibration": CALIBRATION, "impostors": IMPOSTORS, "metrics": {},
        "dataset": "test", "loss": "triplet", "miner": "none", "created_at": "2026-12-01T00:00:00",
    }  # fmt: skip
    return Manifest(**{**values, **fields})  # type: ignore[arg-type]


def tiny_manifest() -> Manifest:
    """The manifest of the 16×16 grey test model (`quadrant_png` images, `quadrant_embedding` vectors)."""
    return make_manifest()


def quadrant_png(quadrant: int) -> bytes:
    """A 16×16 PNG that is white in one quadrant (0-3) and black elsewhere: four distinct images."""
    pixels = np.zeros((16, 16), np.uint8)
    row, col = divmod(quadrant, 2)
    pixels[row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def quadrant_embedding(batch: np.ndarray) -> np.ndarray:
    """Unit vectors from the mean of each quadrant of (N, 1, 16, 16) inputs: one direction per image."""
    x = np.asarray(batch, np.float64).reshape(len(batch), 16, 16)
    means = np.stack([x[:, :8, :8].mean((1, 2)), x[:, :8, 8:].mean((1, 2)),
                      x[:, 8:, :8].mean((1, 2)), x[:, 8:, 8:].mean((1, 2))], axis=1) + 1e-3  # fmt: skip
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)
