"""The enrolment log's record value (protobuf `twinstream.v1.EnrolmentRecord`) ⇄ `EnrolmentValue`.

Why protobuf and not JSON: the value carries the original image, which JSON would have to base64 (a
third more bytes on a log that keeps every enrolled image), and the schema is already where the other
topics' contracts live (``protos/``), so any consumer in any language can read the log. The key (the
image id) is not repeated in the value: compaction keys on it and the reader gets it from the record.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from twinstream._proto.twinstream.v1 import events_pb2 as pb

#: Content type of an enrolment record's value (a Kafka header, for consumers that dispatch on it).
ENROLMENT_CONTENT_TYPE = "application/x-protobuf; message=twinstream.v1.EnrolmentRecord"


@dataclass(frozen=True, slots=True)
class EnrolmentValue:
    """What one enrolment record holds besides its key."""

    tenant: str
    subject: str
    image: bytes
    content_type: str = ""
    enrolled_at_ms: int = 0
    request_id: str = ""


class EnrolmentDecodeError(ValueError):
    """A record value that is not an `EnrolmentRecord` with a tenant, a subject and an image."""


def encode_enrolment(value: EnrolmentValue) -> bytes:
    """The protobuf bytes of one enrolment."""
    return pb.EnrolmentRecord(
        tenant=value.tenant,
        subject=value.subject,
        content_type=value.content_type,
        image=value.image,
        enrolled_at_ms=value.enrolled_at_ms,
        request_id=value.request_id,
    ).SerializeToString()


def decode_enrolment(data: bytes) -> EnrolmentValue:
    """Parse one record value.

    Raises:
        EnrolmentDecodeError: If it does not parse or lacks a tenant, a subject or an image.
    """
    try:
        msg = pb.EnrolmentRecord.FromString(data)
    except DecodeError as exc:
        raise EnrolmentDecodeError(f"not an EnrolmentRecord: {exc}") from None
    if not (msg.tenant and msg.subject and msg.image):
        raise EnrolmentDecodeError("an enrolment record needs a tenant, a subject and an image")
    return EnrolmentValue(
        msg.tenant, msg.subject, msg.image, msg.content_type, msg.enrolled_at_ms, msg.request_id
    )
