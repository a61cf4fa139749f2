"""Kafka records → `ImageRequest` or `RecordRejection`, and requests → headers or an ``ImageEvent`` envelope.

A record arrives as raw image bytes plus UTF-8 headers (any client), or as a ``twinstream.v1.ImageEvent``
when ``content-type`` is ``application/x-protobuf``. Decoding never raises on bad input: it returns a
`RecordRejection` (an error as a value, CONVENTIONS.md §5). Only cheap checks happen here (headers,
envelope, byte size); pixels are `twinstream.images.decode`'s job. Unknown extra headers are
ignored; an unknown value in a known header is refused.

Where the tenant is bound to the topic (`twinstream.tenant_topics.TopicTenancy`) the record's tenant is
its topic's: a ``tenant`` header or envelope field naming the same tenant is accepted (producers
written for the shared topic keep working unchanged), one naming another tenant is refused as
``bad-header``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from twinstream._proto.twinstream.v1 import events_pb2 as pb
from twinstream.codec._wire import (
    FACES_ALL,
    H_CONTENT_TYPE,
    H_FACES,
    H_OP,
    H_REQUEST_ID,
    H_SUBJECT,
    H_TENANT,
    H_TOP_K,
    KNOWN_HEADERS,
    OP_TO_PB,
    PB_TO_OP,
    PROTOBUF_CONTENT_TYPE,
    Headers,
)
from twinstream.config import LimitsSettings
from twinstream.contracts import (
    DEFAULT_TENANT,
    DEFAULT_TOP_K,
    MAX_TOP_K,
    OPS_NEEDING_SUBJECT,
    OPS_WITHOUT_IMAGE,
    ImageRequest,
    MatchResult,
    Op,
    Rejection,
    RejectReason,
    SourceRef,
)
from twinstream.names import SUBJECT_PATTERN, TENANT_PATTERN, is_valid
from twinstream.tenant_topics import TopicTenancy

# Tenant and subject end up inside Milvus filter expressions: keep them to a charset that cannot escape one.
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x1f\x7f\"'`\\]")
_MAX_TEXT = 256
_VERBATIM_HEADERS = frozenset({H_TENANT, H_SUBJECT})


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """A consumed record, detached from any client library (bytewax's ``KafkaSourceMessage`` shape)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    key: bytes | None = None
    timestamp_ms: int = 0

    @property
    def source(self) -> SourceRef:
        return SourceRef(self.topic, self.partition, self.offset, self.timestamp_ms)

    @property
    def default_request_id(self) -> str:
        """``<topic>-<partition>-<offset>``: the request id when the producer gave none."""
        return f"{self.topic}-{self.partition}-{self.offset}"


@dataclass(frozen=True, slots=True)
class RecordRejection:
    """A record refused before the pipeline, with whatever context could be read from it."""

    rejection: Rejection
    request_id: str
    source: SourceRef
    op: Op | None = None
    tenant: str = DEFAULT_TENANT
    subject: str = ""

    def to_result(self) -> MatchResult:
        """The ``REJECTED`` result published for this record."""
        return MatchResult.rejected(
            self.request_id,
            self.rejection,
            op=self.op,
            tenant=self.tenant,
            subject=self.subject,
            source=self.source,
        )


class _RefusedError(Exception):
    """Internal: carries a rejection out of the header/envelope parsers."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def _header_map(headers: Headers) -> dict[str, str]:
    """Known headers as text (case-insensitive names); unknown ones are ignored, bad values refused.

    Tenant and subject values are kept verbatim: `twinstream.names` is the one rule for them on every path,
    and the HTTP API and envelopes do not trim either (" alice" is refused, not read as "alice").
    """
    found: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.strip().lower()
        if name not in KNOWN_HEADERS:
            continue
        try:
            value = (raw_value or b"").decode("utf-8")
            value = value if name in _VERBATIM_HEADERS else value.strip()
        except UnicodeDecodeError:
            raise _RefusedError(RejectReason.BAD_HEADER, f"header {name!r} is not UTF-8") from None
        if name in found and found[name] != value:
            raise _RefusedError(RejectReason.BAD_HEADER, f"header {name!r} given twice with different values")
        found[name] = value
    return found


def _parse_op(text: str) -> Op:
    if not text:
        return Op.IDENTIFY
    try:
        return Op(text.lower())
    except ValueError:
        raise _RefusedError(
            RejectReason.UNKNOWN_OP, f"unknown op {text[:64]!r}; expected {[o.value for o in Op]}"
        ) from None


def _parse_top_k(text: str) -> int:
    if not text:
        return DEFAULT_TOP_K
    try:
        value = int(text)
    except ValueError:
        raise _RefusedError(RejectReason.BAD_HEADER, f"top-k {text[:32]!r} is not an integer") from None
    if not 1 <= value <= MAX_TOP_K:
        raise _RefusedError(RejectReason.BAD_HEADER, f"top-k {value} is outside 1..{MAX_TOP_K}")
    return value


def _check_text(name: str, value: str) -> str:
    if len(value) > _MAX_TEXT or _FORBIDDEN_IN_TEXT.search(value):
        raise _RefusedError(
            RejectReason.BAD_HEADER,
            f"{name} must be at most {_MAX_TEXT} printable characters without quotes or backslashes",
        )
    return value


def _check_subject(value: str) -> str:
    if value and not is_valid("subject", value):
        raise _RefusedError(
            RejectReason.BAD_HEADER,
            f"subject {value[:64]!r} must match {SUBJECT_PATTERN} (one rule everywhere)",
        )
    return value


def _check_tenant(value: str) -> str:
    tenant = value or DEFAULT_TENANT
    if not is_valid("tenant", tenant):
        raise _RefusedError(
            RejectReason.BAD_HEADER,
            f"tenant {tenant[:64]!r} must match {TENANT_PATTERN} (one rule everywhere)",
        )
    return tenant


def _bound_tenant(bound: str, claimed: str) -> str:
    """The topic's tenant; a claim of another tenant (header or envelope) is refused, not obeyed."""
    if claimed and claimed != bound:
        raise _RefusedError(
            RejectReason.BAD_HEADER,
            f"tenant {claimed[:64]!r} does not match the topic's tenant {bound!r}; the topic decides",
        )
    return bound


def _from_envelope(value: bytes, fields: dict[str, str]) -> tuple[dict[str, str], bytes, int]:
    """Merge an ``ImageEvent``'s fields over the headers; returns (fields, image, produced_at_ms)."""
    event = pb.ImageEvent()
    try:
        event.ParseFromString(value)
    except (DecodeError, ValueError) as exc:
        raise _RefusedError(RejectReason.BAD_ENVELOPE, f"not a twinstream.v1.ImageEvent: {exc}") from None
    merged = dict(fields)
    if event.op != pb.OP_UNSPECIFIED:
        if event.op not in PB_TO_OP:
            raise _RefusedError(RejectReason.UNKNOWN_OP, f"unknown envelope op {int(event.op)}")
        merged[H_OP] = PB_TO_OP[event.op].value
    for name, text in (
        (H_SUBJECT, event.subject),
        (H_TENANT, event.tenant),
        (H_REQUEST_ID, event.request_id),
    ):
        if text:
            merged[name] = text
    if event.top_k:
        merged[H_TOP_K] = str(event.top_k)
    if event.all_faces:
        merged[H_FACES] = FACES_ALL
    merged[H_CONTENT_TYPE] = event.content_type
    return merged, bytes(event.image), int(event.produced_at_ms)


def decode_record(
    record: KafkaRecord, limits: LimitsSettings, tenancy: TopicTenancy | None = None
) -> ImageRequest | RecordRejection:
    """Turn one Kafka record into a request, or say why it is refused.

    Args:
        record: The consumed record (raw image + headers, or an ``ImageEvent`` envelope).
        limits: Input limits; only the byte limit is checked here (pixels are checked at decode time).
        tenancy: The topic binding, when tenants are bound to topics; None when the ``tenant`` header
            decides (the shared topic).

    Returns:
        An `ImageRequest`, or a `RecordRejection` carrying a stable reason code.
    """
    request_id, op, subject = record.default_request_id, None, ""
    bound = tenancy.tenant_of(record.topic) if tenancy else None
    tenant = bound or DEFAULT_TENANT
    try:
        if tenancy and bound is None:
            raise _RefusedError(RejectReason.BAD_HEADER, f"topic {record.topic!r} names no tenant")
        fields = _header_map(record.headers)
        request_id = _check_text("request-id", fields.get(H_REQUEST_ID, "")) or request_id
        image, produced_at = record.value or b"", record.timestamp_ms
        is_envelope = fields.get(H_CONTENT_TYPE, "").split(";")[0].strip().lower() == PROTOBUF_CONTENT_TYPE
        if is_envelope:
            fields, image, envelope_time = _from_envelope(image, fields)
            request_id = _check_text("request-id", fields.get(H_REQUEST_ID, "")) or request_id
            produced_at = envelope_time or produced_at
        op = _parse_op(fields.get(H_OP, ""))
        claimed = fields.get(H_TENANT, "")
        tenant = _bound_tenant(bound, claimed) if bound else _check_tenant(claimed)
        subject = _check_subject(fields.get(H_SUBJECT, ""))
        top_k = _parse_top_k(fields.get(H_TOP_K, ""))
        all_faces = _parse_faces(fields.get(H_FACES, ""))
        _check_payload(op, subject, image, limits, is_envelope)
    except _RefusedError as refused:
        return RecordRejection(refused.rejection, request_id, record.source, op, tenant, subject)
    return ImageRequest(
        request_id=request_id,
        op=op,
        image=image if op not in OPS_WITHOUT_IMAGE else b"",
        tenant=tenant,
        subject=subject,
        top_k=top_k,
        content_type=fields.get(H_CONTENT_TYPE, ""),
        produced_at_ms=produced_at,
        source=record.source,
        all_faces=all_faces,
    )


def _parse_faces(value: str) -> bool:
    """Header ``faces``: ``all`` answers for every face of the image; empty (or ``largest``) for one."""
    if value in ("", "largest"):
        return False
    if value == FACES_ALL:
        return True
    raise _RefusedError(RejectReason.BAD_HEADER, f"faces {value[:32]!r} must be 'all' or 'largest'")


def _check_payload(op: Op, subject: str, image: bytes, limits: LimitsSettings, is_envelope: bool) -> None:
    if op in OPS_NEEDING_SUBJECT and not subject:
        raise _RefusedError(RejectReason.MISSING_SUBJECT, f"op {op.value!r} needs a 'subject' header")
    if op in OPS_WITHOUT_IMAGE:
        return
    if not image:
        reason = RejectReason.BAD_ENVELOPE if is_envelope else RejectReason.EMPTY_IMAGE
        raise _RefusedError(reason, "no image bytes")
    if len(image) > limits.max_image_bytes:
        raise _RefusedError(
            RejectReason.TOO_LARGE, f"{len(image)} bytes exceeds the limit of {limits.max_image_bytes}"
        )


def request_headers(request: ImageRequest, *, include_content_type: bool = True) -> list[tuple[str, bytes]]:
    """The headers a producer sends with a raw-bytes request (what `twinstream publish` writes)."""
    headers = [(H_OP, request.op.value), (H_TENANT, request.tenant), (H_REQUEST_ID, request.request_id)]
    if request.subject:
        headers.append((H_SUBJECT, request.subject))
    if request.top_k != DEFAULT_TOP_K:
        headers.append((H_TOP_K, str(request.top_k)))
    if request.all_faces:
        headers.append((H_FACES, FACES_ALL))
    if include_content_type and request.content_type:
        headers.append((H_CONTENT_TYPE, request.content_type))
    return [(name, value.encode("utf-8")) for name, value in headers]


def encode_image_event(request: ImageRequest) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A request as an ``ImageEvent`` envelope: (value, headers with the protobuf content type)."""
    event = pb.ImageEvent(
        op=OP_TO_PB[request.op],
        subject=request.subject,
        tenant=request.tenant,
        request_id=request.request_id,
        top_k=request.top_k,
        content_type=request.content_type,
        image=request.image,
        produced_at_ms=request.produced_at_ms,
        all_faces=request.all_faces,
    )
    return event.SerializeToString(), [(H_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE.encode())]
