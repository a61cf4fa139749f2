"""Publish image files to the images topic with the contract's headers (what `twinstream publish` does)."""

from __future__ import annotations

import json
import mimetypes
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.kafka_clients import new_producer
from twinstream.codec import encode_image_event, request_headers
from twinstream.config import KafkaSettings
from twinstream.contracts import DEFAULT_TENANT, DEFAULT_TOP_K, OPS_NEEDING_SUBJECT, ImageRequest, Op

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
)
_EXTRA_TYPES = {".pgm": "image/x-portable-graymap", ".ppm": "image/x-portable-pixmap", ".webp": "image/webp"}


class PublishError(ValueError):
    """The publish request cannot be carried out as asked (no files, no subject for an op that needs one)."""


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One file to publish and the request it becomes."""

    path: Path
    request_id: str
    subject: str


@dataclass(slots=True)
class PublishSummary:
    """What a publish run did."""

    sent: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def collect_images(paths: Iterable[Path]) -> list[Path]:
    """Files given directly, plus every image file under given directories (sorted, recursive)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise PublishError(f"no such file or directory: {path}")
    return found


def plan(
    files: list[Path], op: Op, *, subject: str = "", subject_from_dir: bool = False
) -> list[PublishItem]:
    """One `PublishItem` per file; the subject is ``subject`` or the file's directory name."""
    if not files:
        raise PublishError("no image files to publish")
    if op in OPS_NEEDING_SUBJECT and not subject and not subject_from_dir:
        raise PublishError(f"op {op.value!r} needs --subject or --subject-from-dir")
    return [
        PublishItem(path, uuid.uuid4().hex, path.parent.name if subject_from_dir else subject)
        for path in files
    ]


def content_type_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _records(
    items: list[PublishItem], op: Op, tenant: str, top_k: int, envelope: bool
) -> Iterator[tuple[PublishItem, bytes, list[tuple[str, bytes]]]]:
    for item in items:
        data = item.path.read_bytes()
        request = ImageRequest(
            item.request_id,
            op,
            data,
            tenant,
            item.subject,
            top_k,
            content_type_of(item.path),
            int(time.time() * 1000),
        )
        if envelope:
            value, headers = encode_image_event(request)
            yield item, value, headers
        else:
            yield item, data, request_headers(request)


def publish_files(
    producer: KafkaProducer,
    topic: str,
    items: list[PublishItem],
    op: Op,
    *,
    tenant: str = DEFAULT_TENANT,
    top_k: int = DEFAULT_TOP_K,
    envelope: bool = False,
    on_ack: Callable[[int], None] = lambda n: None,
    flush_timeout_s: float = 120.0,
) -> PublishSummary:
    """Send every item (key = request id), wait for the acks and count what made it.

    Args:
        on_ack: Called with the byte size of each acknowledged record (progress bars).
    """
    summary = PublishSummary()
    started = time.monotonic()
    futures: list[tuple[Any, int]] = []
    for item, value, headers in _records(items, op, tenant, top_k, envelope):
        future = producer.send(topic, key=item.request_id.encode(), value=value, headers=headers)
        size = len(value)
        future.add_callback(lambda _meta, size=size: on_ack(size))
        futures.append((future, size))
    producer.flush(timeout=flush_timeout_s)
    for future, size in futures:
        try:
            future.get(timeout=0.1)
            summary.sent += 1
            summary.bytes += size
        except KafkaError as exc:
            summary.failed += 1
            summary.errors.append(str(exc))
    summary.seconds = time.monotonic() - started
    return summary


def write_manifest(path: Path, items: list[PublishItem], op: Op, tenant: str) -> None:
    """JSON lines ``{"path", "request_id", "op", "tenant", "subject"}`` so results can be matched later."""
    lines = (
        json.dumps(
            {
                "path": str(i.path),
                "request_id": i.request_id,
                "op": op.value,
                "tenant": tenant,
                "subject": i.subject,
            }
        )
        for i in items
    )
    path.write_text("\n".join(lines) + "\n")


def build_publish_producer(kafka: KafkaSettings) -> KafkaProducer:
    return new_producer(
        kafka,
        client_id="twinstream-publish",
        acks="all",
        linger_ms=10,
        batch_size=kafka.producer_batch_bytes,
        max_request_size=kafka.max_message_bytes,
    )
