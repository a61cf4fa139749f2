"""One tenant's vectors in a replica's memory, and the exact nearest-subject search over them.

Used by `services.gallery.mirror.MirroredGallery`; kept apart so the coherence logic there reads alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from services.gallery.milvus_gallery import cosine_to_euclidean
from services.matching.ports import Hit


@dataclass
class TenantCopy:
    """One tenant's vectors; searched as a matrix whose rows are grouped by subject.

    The grouped matrix is rebuilt lazily after a change, so an enrol-only stream never pays for it.
    """

    generation: int
    too_large: bool = False  # over ``max_vectors``: no rows held, Milvus answers
    loaded_at: float = field(default_factory=time.monotonic)
    ids: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    _grouped: GroupedRows | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, rows: Iterable[tuple[str, str, np.ndarray]]) -> None:
        for image_id, subject, vector in rows:
            self.ids.append(image_id)
            self.subjects.append(subject)
            self.vectors.append(np.asarray(vector, dtype=np.float32))
        self._grouped = None

    def remove_subjects(self, subjects: set[str]) -> None:
        keep = [i for i, s in enumerate(self.subjects) if s not in subjects]
        self.ids = [self.ids[i] for i in keep]
        self.subjects = [self.subjects[i] for i in keep]
        self.vectors = [self.vectors[i] for i in keep]
        self._grouped = None

    def grouped(self) -> GroupedRows:
        if self._grouped is None:
            self._grouped = GroupedRows.build(self.subjects, self.vectors)
        return self._grouped


@dataclass(frozen=True, slots=True)
class GroupedRows:
    """Rows sorted by subject: ``matrix[starts[g]:ends[g]]`` are the images of subject ``names[g]``."""

    matrix: np.ndarray
    names: list[str]
    starts: np.ndarray
    rows: dict[str, slice]

    @classmethod
    def build(cls, subjects: list[str], vectors: list[np.ndarray]) -> GroupedRows:
        order = sorted(range(len(subjects)), key=subjects.__getitem__)
        names: list[str] = []
        starts: list[int] = []
        for row, i in enumerate(order):
            if not names or subjects[i] != names[-1]:
                names.append(subjects[i])
                starts.append(row)
        ends = [*starts[1:], len(order)] if starts else []
        matrix = np.stack([vectors[i] for i in order]) if order else np.zeros((0, 0), np.float32)
        rows = {name: slice(a, b) for name, a, b in zip(names, starts, ends, strict=True)}
        return cls(matrix, names, np.asarray(starts, dtype=np.int64), rows)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[Hit]]:
        """Exact: each subject's best cosine over its images, the ``top_k`` best subjects per query."""
        if not self.names:
            return [[] for _ in queries]
        sims = queries @ self.matrix.T  # (queries, images)
        # (queries, subjects): a subject's best image; with one image per subject the columns already are.
        best = sims if len(self.names) == len(self.matrix) else np.maximum.reduceat(sims, self.starts, axis=1)
        k = min(top_k, len(self.names))
        top = np.argpartition(-best, k - 1, axis=1)[:, :k]
        # Rank the k per row in one vectorised pass (a Python loop per query was most of this method).
        order = np.argsort(-np.take_along_axis(best, top, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(top, order, axis=1)
        distances = cosine_to_euclidean(np.take_along_axis(best, ranked, axis=1)).tolist()
        names = self.names
        return [
            [Hit(names[c], d) for c, d in zip(row, dist, strict=True)]
            for row, dist in zip(ranked.tolist(), distances, strict=True)
        ]

    def vectors_of(self, subject: str) -> np.ndarray | None:
        rows = self.rows.get(subject)
        return None if rows is None else self.matrix[rows]
