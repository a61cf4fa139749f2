"""Dead-letter metadata: the headers a DLQ record carries besides the original ones, and reading them back.

A DLQ copy is the original record plus three headers, so a record just under the topic's size limit
would not fit: `DeadLetter.fitted` cuts the value (and, if they alone are too big, the original headers)
to fit and says so in a ``dead-letter-trimmed`` header holding the original value's size in bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from twinstream._proto.twinstream.v1 import events_pb2 as pb
from twinstream.codec._wire import (
    H_DEAD_LETTER,
    H_DEAD_LETTER_TRIMMED,
    H_ERROR_DETAIL,
    H_ERROR_REASON,
    Headers,
    header_value,
    source_from_pb,
    source_to_pb,
)
from twinstream.codec.records import KafkaRecord
from twinstream.contracts import RejectReason, SourceRef


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """What a DLQ record says about why it is there (the ``dead-letter`` header, decoded)."""

    request_id: str
    reason: RejectReason
    detail: str
    source: SourceRef
    failed_at_ms: int
    worker: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A consumed record to copy to the DLQ, with why."""

    record: KafkaRecord
    info: DeadLetterInfo

    def kafka_headers(self, *, max_detail: int = 1024) -> list[tuple[str, bytes]]:
        """The original headers plus the dead-letter ones."""
        return dead_letter_headers(self.record.headers, self.info, max_detail=max_detail)

    def fitted(self, max_bytes: int) -> DeadLetterCopy:
        """The DLQ record to send: the original, cut when needed so its batch is at most ``max_bytes``."""
        request_id = self.info.request_id.encode("utf-8")
        key = self.record.key or request_id
        if len(key) > max_bytes // 4:  # the key only partitions the DLQ: a huge one gives way to the id
            key = request_id[:256]
        value = self.record.value or b""
        headers = self.kafka_headers()
        if record_batch_bytes(key, value, headers) <= max_bytes:
            return DeadLetterCopy(key, self.record.value, headers)  # a tombstone stays one
        headers.append((H_DEAD_LETTER_TRIMMED, str(len(value)).encode()))
        room = max_bytes - record_batch_bytes(key, b"", headers)
        if room < 0:  # the original headers alone are too big: keep only ours
            ours = {H_ERROR_REASON, H_ERROR_DETAIL, H_DEAD_LETTER, H_DEAD_LETTER_TRIMMED}
            headers = [(name, data) for name, data in headers if name in ours]
            room = max(0, max_bytes - record_batch_bytes(key, b"", headers))
        return DeadLetterCopy(key, value[:room], headers)


@dataclass(frozen=True, slots=True)
class DeadLetterCopy:
    """The key, value and headers of one DLQ record as sent."""

    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


#: A record batch's fixed header, and the most a record's own framing and each header's can add
#: (varint lengths, attributes, timestamp and offset deltas): Kafka's v2 format, uncompressed.
_BATCH_OVERHEAD = 61
_RECORD_OVERHEAD = 40
_HEADER_OVERHEAD = 10


def record_batch_bytes(key: bytes, value: bytes, headers: Headers) -> int:
    """An upper bound of the size of a batch holding only this record (what ``max.message.bytes`` limits)."""
    header_bytes = sum(len(name.encode()) + len(data or b"") + _HEADER_OVERHEAD for name, data in headers)
    return _BATCH_OVERHEAD + _RECORD_OVERHEAD + len(key) + len(value) + header_bytes


def dead_letter_headers(
    original: Headers, info: DeadLetterInfo, *, max_detail: int = 1024
) -> list[tuple[str, bytes]]:
    """The original headers plus ``error-reason``, ``error-detail`` and ``dead-letter`` (base64 proto)."""
    own = {H_ERROR_REASON, H_ERROR_DETAIL, H_DEAD_LETTER}
    headers = [(name, value or b"") for name, value in original if name.lower() not in own]
    meta = pb.DeadLetter(
        request_id=info.request_id,
        error_reason=info.reason.value,
        error_detail=info.detail[:max_detail],
        source=source_to_pb(info.source),
        failed_at_ms=info.failed_at_ms,
        worker=info.worker,
    )
    headers += [
        (H_ERROR_REASON, info.reason.value.encode()),
        (H_ERROR_DETAIL, info.detail[:max_detail].encode("utf-8", "replace")),
        (H_DEAD_LETTER, base64.b64encode(meta.SerializeToString())),
    ]
    return headers


def read_dead_letter(headers: Headers) -> DeadLetterInfo:
    """Decode the ``dead-letter`` header of a DLQ record; raises ``ValueError`` when it is absent or bad."""
    raw = header_value(headers, H_DEAD_LETTER)
    if not raw:
        raise ValueError("record has no dead-letter header")
    msg = pb.DeadLetter()
    try:
        msg.ParseFromString(base64.b64decode(raw, validate=True))
    except (DecodeError, ValueError) as exc:
        raise ValueError(f"bad dead-letter header: {exc}") from None
    src = msg.source
    return DeadLetterInfo(
        msg.request_id,
        RejectReason(msg.error_reason),
        msg.error_detail,
        source_from_pb(src),
        msg.failed_at_ms,
        msg.worker,
    )
