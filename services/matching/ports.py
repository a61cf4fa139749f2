"""What the matching pipeline needs from the stores behind it, and the values that cross those ports.

Adapters implement these: `services.gallery` (Milvus, with its in-memory mirror) the `Gallery`, and
`services.results` (Redis) the `EmbeddingCache`. The pipeline imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from twinstream.contracts import TenantPolicy

SubjectKey = tuple[str, str]  # (tenant, subject)


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One image to enrol: its deterministic id (`twinstream.names.image_id`), owner and unit embedding."""

    image_id: str
    tenant: str
    subject: str
    vector: np.ndarray


@dataclass(frozen=True, slots=True)
class Hit:
    """One subject found by a search, with its best Euclidean distance to the query."""

    subject: str
    distance: float


class Gallery(Protocol):
    """Enrolled vectors by (tenant, subject): one call per batch and op."""

    def enroll(self, items: Sequence[Enrollment]) -> list[bool]:
        """Upsert; per item, True if its image id is new."""
        ...

    def vectors_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, np.ndarray]:
        """Every enrolled vector of each subject (absent keys have no entry)."""
        ...

    def search(self, tenant: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]:
        """The ``top_k`` nearest subjects of one tenant per query (each subject's nearest image)."""
        ...

    def delete(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        """Remove every vector of each subject; how many were removed per key."""
        ...

    def subjects(self, tenant: str) -> dict[str, int]:
        """Subjects of a tenant and their image counts."""
        ...

    def size(self, tenant: str) -> int:
        """How many vectors a tenant holds (open-set identification's threshold depends on it)."""
        ...

    def flush(self) -> None:
        """Persist pending writes."""
        ...


class Policies(Protocol):
    """Each tenant's operating points (target FAR for verify, target FPIR for identify)."""

    async def of(self, tenants: Sequence[str]) -> dict[str, TenantPolicy]:
        """The policy in force for each tenant (the default where a tenant set none)."""
        ...


class EmbeddingCache(Protocol):
    """Embeddings by (model version, image digest), so a repeated image skips the tower."""

    def get_many(self, model_version: str, digests: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors in the order of ``digests`` (None where not cached)."""
        ...

    def put_many(self, model_version: str, digests: Sequence[str], vectors: np.ndarray) -> None:
        """Cache one vector per digest."""
        ...
