"""What the matching pipeline needs from a gallery, and what a mirror needs from the store behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from services.gallery.milvus_gallery import Enrollment, Hit, SubjectKey


class Gallery(Protocol):
    """Enrolled vectors by (tenant, subject): one call per batch and op."""

    def enroll(self, items: Sequence[Enrollment]) -> list[bool]: ...

    def vectors_of(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, np.ndarray]: ...

    def search(self, tenant: str, vectors: np.ndarray, top_k: int) -> list[list[Hit]]: ...

    def delete(self, keys: Sequence[SubjectKey]) -> dict[SubjectKey, int]: ...

    def subjects(self, tenant: str) -> dict[str, int]: ...

    def flush(self) -> None: ...


class GalleryStore(Gallery, Protocol):
    """A gallery that can also hand over a whole tenant (the Milvus gallery, for the mirror)."""

    def tenant_rows(self, tenant: str, limit: int) -> list[tuple[str, str, np.ndarray]]: ...
