"""Dead-letter metadata: the headers a DLQ record carries besides the original ones, and reading them back."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from twinstream._proto.twinstream.v1 import events_pb2 as pb
from twinstream.codec._wire import (
    H_DEAD_LETTER,
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
