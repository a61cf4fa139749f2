"""The values that cross stage boundaries: frozen dataclasses and StrEnums, never string-keyed dicts.

Wire formats (protobuf, JSON, Kafka headers) are translated to and from these types in
`twinstream.codec` only; everything between the edges speaks these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Op(StrEnum):
    """What a request asks of the gallery."""

    ENROLL = "enroll"
    VERIFY = "verify"
    IDENTIFY = "identify"
    DELETE = "delete"


#: Ops that name a subject and cannot run without one.
OPS_NEEDING_SUBJECT = frozenset({Op.ENROLL, Op.VERIFY, Op.DELETE})
#: Ops that carry no image (delete removes a subject's vectors).
OPS_WITHOUT_IMAGE = frozenset({Op.DELETE})


class Decision(StrEnum):
    """The outcome of one request, as published on the results topic."""

    ENROLLED = "ENROLLED"
    DUPLICATE = "DUPLICATE"
    MATCH = "MATCH"
    NO_MATCH = "NO_MATCH"
    UNKNOWN = "UNKNOWN"
    DELETED = "DELETED"
    REJECTED = "REJECTED"


class RejectReason(StrEnum):
    """Stable reason codes shared by the DLQ's `error-reason` header and the HTTP API's 4xx bodies."""

    UNDECODABLE_IMAGE = "undecodable-image"
    UNSUPPORTED_FORMAT = "unsupported-format"
    TOO_LARGE = "too-large"
    TOO_MANY_PIXELS = "too-many-pixels"
    EMPTY_IMAGE = "empty-image"
    MISSING_SUBJECT = "missing-subject"
    BAD_ENVELOPE = "bad-envelope"
    BAD_HEADER = "bad-header"
    UNKNOWN_OP = "unknown-op"
    UNKNOWN_SUBJECT = "unknown-subject"
    NO_FACE = "no-face"
    ERASED_SUBJECT = "erased-subject"  # an enrolment written before its subject was erased (a replay)
    PROCESSING_FAILED = "processing-failed"


DEFAULT_TENANT = "default"
DEFAULT_TOP_K = 5
#: Most candidates an identify may ask for (Kafka header, envelope and HTTP alike).
MAX_TOP_K = 100

#: Members by wire value: a dict lookup instead of ``Op(value)`` (~1 µs), for decoders on the hot path.
OPS_BY_VALUE = {member.value: member for member in Op}
DECISIONS_BY_VALUE = {member.value: member for member in Decision}
REASONS_BY_VALUE = {member.value: member for member in RejectReason}


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a request came from in Kafka (absent for HTTP requests)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input was refused; an error as a value (CONVENTIONS.md §5)."""

    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One decoded request: what to do, for whom, and the raw image bytes (not yet decoded)."""

    request_id: str
    op: Op
    image: bytes = b""
    tenant: str = DEFAULT_TENANT
    subject: str = ""
    top_k: int = DEFAULT_TOP_K
    content_type: str = ""
    produced_at_ms: int = 0
    source: SourceRef | None = None
    all_faces: bool = False  # identify every face of a group photo (header ``faces: all``)

    def without_image(self) -> ImageRequest:
        """This request with its image bytes dropped (what crosses to Serve once they are decoded)."""
        return replace(self, image=b"")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One gallery hit: a subject, its best distance and the calibrated probability of a match."""

    subject: str
    distance: float
    probability: float


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds spent per stage for one request (0.0 where a stage did not run)."""

    decode_s: float = 0.0
    embed_s: float = 0.0
    gallery_s: float = 0.0
    total_s: float = 0.0


class PolicyKind(StrEnum):
    """What an operating point bounds: false accepts per comparison, or false positive identifications."""

    FAR = "far"  # verify: a stranger's claim is accepted with at most this probability
    FPIR = "fpir"  # identify: a person not enrolled is matched to someone with at most this probability


#: Allowed range of a target FAR or FPIR (below 1e-7 nothing measured supports the threshold).
POLICY_MIN, POLICY_MAX = 1e-7, 0.5


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """A tenant's operating points: target FAR for verify, target FPIR for identify (open set)."""

    verify_far: float = 1e-3
    identify_fpir: float = 1e-2

    def __post_init__(self) -> None:
        for name, value in (("verify_far", self.verify_far), ("identify_fpir", self.identify_fpir)):
            if not POLICY_MIN <= value <= POLICY_MAX:
                raise ValueError(f"{name} must be in [{POLICY_MIN:g}, {POLICY_MAX:g}], got {value!r}")


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """The operating point that decided a result: MATCH ⇔ ``probability >= min_probability``.

    Attributes:
        kind: FAR (verify) or FPIR (identify).
        target: The tenant's target rate.
        threshold: The distance it maps to for this model (and, for identify, this gallery size).
        min_probability: The probability at that distance (p*): the decision rule's cut.
        gallery_size: Identify only: vectors compared against (the FPIR threshold depends on it).
    """

    kind: PolicyKind
    target: float
    threshold: float
    min_probability: float
    gallery_size: int = 0


@dataclass(frozen=True, slots=True)
class FaceBox:
    """Where a face is in the original image, in pixels (right and bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)


@dataclass(frozen=True, slots=True)
class FaceAnswer:
    """One face of a group identify (``faces: all``): where it is and who it is."""

    box: FaceBox
    decision: Decision
    subject: str = ""
    distance: float | None = None
    probability: float | None = None
    candidates: tuple[Candidate, ...] = ()


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The answer to one request, whatever its outcome.

    Face models add: ``face`` (the box the answer is about: the largest face for enrol and verify, the
    best match for a group identify), ``faces_found`` (how many faces the image held) and, for identify
    with ``faces: all``, ``faces`` (one answer per face). ``policy`` is the operating point that decided.
    """

    request_id: str
    op: Op | None
    decision: Decision
    tenant: str = DEFAULT_TENANT
    subject: str = ""
    distance: float | None = None
    probability: float | None = None
    threshold: float | None = None
    candidates: tuple[Candidate, ...] = ()
    model_version: str = ""
    source: SourceRef | None = None
    error_reason: RejectReason | None = None
    error_detail: str = ""
    timings: Timings = field(default_factory=Timings)
    policy: OperatingPoint | None = None
    face: FaceBox | None = None
    faces_found: int = 0
    faces: tuple[FaceAnswer, ...] = ()

    @classmethod
    def rejected(
        cls,
        request_id: str,
        rejection: Rejection,
        *,
        op: Op | None = None,
        tenant: str = DEFAULT_TENANT,
        subject: str = "",
        source: SourceRef | None = None,
    ) -> MatchResult:
        """The result published for a refused input."""
        return cls(
            request_id=request_id,
            op=op,
            decision=Decision.REJECTED,
            tenant=tenant,
            subject=subject,
            source=source,
            error_reason=rejection.reason,
            error_detail=rejection.detail,
        )

    def with_timings(self, timings: Timings) -> MatchResult:
        """This result with ``timings``."""
        return replace(self, timings=timings)


class InputError(ValueError):
    """Raised at an input boundary (imaging, codec) with a stable reason code."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[InputError], tuple[RejectReason, str]]:
        return InputError, (self.reason, self.detail)  # crosses process pools intact

    def as_rejection(self) -> Rejection:
        return Rejection(self.reason, self.detail)
