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

    def index_subjects(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """Remember which (tenant, subject) each image digest was enrolled or verified for (erasure)."""
        ...


@dataclass(frozen=True, slots=True)
class LoggedEnrolment:
    """One enrolment as the enrolment log keeps it: enough to enrol the image again with another model.

    Attributes:
        image_id: The deterministic id (`twinstream.names.image_id`): the log's key and the gallery's.
        tenant: Gallery namespace.
        subject: Who the image shows.
        image: The original image bytes (a new model pre-processes them for its own input spec).
        content_type: Of ``image``, as the producer declared it ("" when unknown).
        enrolled_at_ms: When the enrolment was accepted (epoch milliseconds).
        request_id: The request that enrolled it (for tracing; "" when unknown).
    """

    image_id: str
    tenant: str
    subject: str
    image: bytes
    content_type: str = ""
    enrolled_at_ms: int = 0
    request_id: str = ""


class EnrolmentLog(Protocol):
    """The durable record of every enrolled image, from which any model version's gallery is rebuilt.

    The pipeline appends after the gallery write succeeded (a crash in between is healed by the replay,
    which enrols again and appends again: appends are idempotent by image id) and tombstones before it
    deletes from the gallery (write-ahead: a crash in between leaves the tombstone, and the replayed
    delete finds the rows again). Both calls block until the broker acknowledged every record and raise
    when it did not (a dependency failure: the caller retries the batch).
    """

    def append(self, entries: Sequence[LoggedEnrolment]) -> None:
        """Record enrolments (each keyed by its image id; a later record of the same id replaces it)."""
        ...

    def tombstone(self, image_ids: Sequence[str]) -> None:
        """Record that these image ids are deleted (compaction then drops their records)."""
        ...


class ErasureLedger(Protocol):
    """Which subjects were erased, and when: an enrolment recorded before that time must be refused."""

    def erased_before(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        """Erasure time (epoch ms) of each erased (tenant, subject) among ``keys``; others are absent."""
        ...


class Eraser(Protocol):
    """A delete that forgets a subject everywhere: every model version's collection (so every replica's
    copy), cached embeddings, stored results naming it, its enrolment-log records (tombstones) and, in an
    erasure ledger, that it was erased (a replayed enrolment from before is refused)."""

    def erase(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]:
        """Erase each (tenant, subject); how many gallery rows were removed, all versions together."""
        ...


class ImageIdLookup(Protocol):
    """A gallery that names the image ids of a subject (what a delete tombstones in the enrolment log)."""

    def image_ids_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, list[str]]:
        """The image ids enrolled for each (tenant, subject); absent keys have no entry."""
        ...
