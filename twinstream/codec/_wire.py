"""Names shared by the codec modules: header names, content types and contract ⇄ protobuf enum maps."""

from __future__ import annotations

from collections.abc import Sequence

from twinstream._proto.twinstream.v1 import events_pb2 as pb
from twinstream.contracts import Decision, Op, SourceRef

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"
H_OP = "op"
H_SUBJECT = "subject"
H_TENANT = "tenant"
H_REQUEST_ID = "request-id"
H_TOP_K = "top-k"
H_FACES = "faces"  # "all": identify every face of a group photo (else: the largest)
FACES_ALL = "all"
H_CONTENT_TYPE = "content-type"
H_ERROR_REASON = "error-reason"
H_ERROR_DETAIL = "error-detail"
H_DEAD_LETTER = "dead-letter"
#: On a DLQ copy whose value was cut to fit the topic's max.message.bytes: the original value's size.
H_DEAD_LETTER_TRIMMED = "dead-letter-trimmed"
KNOWN_HEADERS = frozenset({H_OP, H_SUBJECT, H_TENANT, H_REQUEST_ID, H_TOP_K, H_FACES, H_CONTENT_TYPE})

#: Kafka headers as kafka-python gives them: (name, value or None), duplicates allowed.
Headers = Sequence[tuple[str, bytes | None]]

OP_TO_PB: dict[Op, pb.Op] = {
    Op.ENROLL: pb.OP_ENROLL,
    Op.VERIFY: pb.OP_VERIFY,
    Op.IDENTIFY: pb.OP_IDENTIFY,
    Op.DELETE: pb.OP_DELETE,
}
PB_TO_OP: dict[int, Op] = {value: key for key, value in OP_TO_PB.items()}
DECISION_TO_PB: dict[Decision, pb.Decision] = {
    Decision.ENROLLED: pb.DECISION_ENROLLED,
    Decision.DUPLICATE: pb.DECISION_DUPLICATE,
    Decision.MATCH: pb.DECISION_MATCH,
    Decision.NO_MATCH: pb.DECISION_NO_MATCH,
    Decision.UNKNOWN: pb.DECISION_UNKNOWN,
    Decision.DELETED: pb.DECISION_DELETED,
    Decision.REJECTED: pb.DECISION_REJECTED,
}
PB_TO_DECISION: dict[int, Decision] = {value: key for key, value in DECISION_TO_PB.items()}


def header_value(headers: Headers, name: str) -> bytes | None:
    """The last value of header ``name`` (case-insensitive), or None."""
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found


def source_to_pb(source: SourceRef) -> pb.SourceRef:
    return pb.SourceRef(
        topic=source.topic, partition=source.partition, offset=source.offset, timestamp_ms=source.timestamp_ms
    )


def source_from_pb(msg: pb.SourceRef) -> SourceRef:
    return SourceRef(msg.topic, msg.partition, msg.offset, msg.timestamp_ms)
