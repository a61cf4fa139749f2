"""What the demo published (with the right answers) and what it read back (with Kafka timestamps)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twinstream.contracts import MatchResult, Op


@dataclass(frozen=True, slots=True)
class DemoCase:
    """One published request and what the right answer is.

    Attributes:
        request_id: The ``request-id`` header.
        op: The ``op`` header.
        image_path: The image file published as the value (None for poison built in memory).
        true_subject: Who the image shows ("" for poison and group photos).
        claimed_subject: The subject an enrol or verify names.
        poison: The reason code a poison message must be refused with ("" for a healthy request).
        all_faces: A group photo: identify every face (header ``faces: all``).
    """

    request_id: str
    op: Op
    image_path: Path | None
    true_subject: str
    claimed_subject: str = ""
    poison: str = ""
    all_faces: bool = False


@dataclass(frozen=True, slots=True)
class Observed:
    """A result read back from the results topic, with its Kafka timestamps."""

    result: MatchResult
    produced_ms: int
    answered_ms: int

    @property
    def latency_s(self) -> float:
        return max(0.0, (self.answered_ms - self.produced_ms) / 1000)
