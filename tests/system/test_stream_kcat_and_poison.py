"""The stream against real Kafka, Serve, Milvus and Redis: a foreign client (kcat), and poison messages."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from services.ingest.serve_pipeline import ServePipeline
from tests.support.serving import ServedApp
from tests.support.streams import (
    by_request,
    collect_dead_letters,
    collect_results,
    digit_png,
    producer_for,
    stream_settings,
    worker_thread,
)
from twinstream.codec import encode_image_event
from twinstream.config import Settings
from twinstream.contracts import Decision, ImageRequest, Op, RejectReason

pytestmark = pytest.mark.system
KCAT = shutil.which("kcat")


def kcat_publish(settings: Settings, path: Path, **headers: str) -> None:
    args = [KCAT or "kcat", "-P", "-b", settings.kafka.bootstrap, "-t", settings.kafka.images_topic]
    for name, value in headers.items():
        args += ["-H", f"{name.replace('_', '-')}={value}"]
    subprocess.run([*args, str(path)], check=True, timeout=30)


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (Debian package kcat)")
def test_raw_png_jpeg_and_pgm_published_with_kcat_are_enrolled_then_verified(
    served_app: ServedApp, kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = stream_settings(served_app.settings, unique_name)
    files = {"PNG": "zero", "JPEG": "one", "PPM": "two"}
    for index, (fmt, subject) in enumerate(files.items()):
        (tmp_path / f"{subject}.img").write_bytes(digit_png(index, fmt))
    with worker_thread(settings, ServePipeline(settings), store=True):
        for subject in files.values():
            kcat_publish(
                settings,
                tmp_path / f"{subject}.img",
                op="enroll",
                subject=subject,
                tenant=unique_name,
                request_id=f"enroll-{subject}",
            )
        assert len(collect_results(settings, 3)) >= 3
        for subject in files.values():
            kcat_publish(
                settings,
                tmp_path / f"{subject}.img",
                op="verify",
                subject=subject,
                tenant=unique_name,
                request_id=f"verify-{subject}",
            )
        kcat_publish(settings, tmp_path / "zero.img", tenant=unique_name, request_id="identify-zero")
        results = by_request(collect_results(settings, 7))
    assert sorted(results) == sorted(
        [*(f"enroll-{s}" for s in files.values()), *(f"verify-{s}" for s in files.values()), "identify-zero"]
    )
    assert all(len(answers) == 1 for answers in results.values()), "one answer per request id"
    for subject in files.values():
        assert results[f"enroll-{subject}"][0].decision == Decision.ENROLLED
        verified = results[f"verify-{subject}"][0]
        assert (
            verified.decision == Decision.MATCH and verified.distance is not None and verified.distance < 1e-3
        )
        assert verified.model_version == served_app.manifest.version
    identified = results["identify-zero"][0]
    assert identified.op == Op.IDENTIFY and identified.candidates[0].subject == "zero"
    assert collect_dead_letters(settings) == []


def png_bomb(width: int = 10_000, height: int = 5_000) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` pixels (50 MP)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def poison_messages(tenant: str) -> dict[str, tuple[bytes, list[tuple[str, bytes]], RejectReason]]:
    """Request id → (value, headers, expected reason)."""
    common = [("tenant", tenant.encode())]
    identify = [("op", b"identify"), *common]
    envelope, envelope_headers = encode_image_event(ImageRequest("x", Op.IDENTIFY, digit_png(3), tenant))
    return {
        "random-bytes": (os.urandom(4096), identify, RejectReason.UNDECODABLE_IMAGE),
        "truncated-jpeg": (digit_png(4, "JPEG")[:120], identify, RejectReason.UNDECODABLE_IMAGE),
        "png-bomb": (png_bomb(), identify, RejectReason.TOO_MANY_PIXELS),
        "twenty-mb": (os.urandom(20 * 1024 * 1024), identify, RejectReason.TOO_LARGE),
        "unknown-op": (digit_png(5), [("op", b"teleport"), *common], RejectReason.UNKNOWN_OP),
        "missing-subject": (digit_png(6), [("op", b"verify"), *common], RejectReason.MISSING_SUBJECT),
        "bad-envelope": (
            envelope[: len(envelope) // 2],
            [*envelope_headers, *common],
            RejectReason.BAD_ENVELOPE,
        ),
    }


def test_poison_messages_each_land_in_the_dlq_with_their_reason_and_the_partition_keeps_flowing(
    served_app: ServedApp, kafka_bootstrap: str, unique_name: str
) -> None:
    settings = stream_settings(served_app.settings, unique_name, partitions=1)
    poison = poison_messages(unique_name)
    producer = producer_for(settings)
    topic = settings.kafka.images_topic
    for request_id, (value, headers, _) in poison.items():
        producer.send(topic, value, headers=[*headers, ("request-id", request_id.encode())], partition=0)
        good = [
            ("op", b"identify"),
            ("tenant", unique_name.encode()),
            ("request-id", f"after-{request_id}".encode()),
        ]
        producer.send(topic, digit_png(7), headers=good, partition=0)
    producer.flush()
    producer.close()
    with worker_thread(settings, ServePipeline(settings), store=True):
        results = by_request(collect_results(settings, 2 * len(poison), timeout_s=90))
    dead = {info.request_id: (value, info) for value, info in collect_dead_letters(settings)}
    assert sorted(dead) == sorted(poison)
    for request_id, (value, _headers, reason) in poison.items():
        assert dead[request_id][1].reason == reason, request_id
        assert dead[request_id][0] == value, "the DLQ keeps the original value"
        assert results[request_id][0].decision == Decision.REJECTED
        assert results[request_id][0].error_reason == reason
        follower = results[f"after-{request_id}"][0]
        assert follower.decision != Decision.REJECTED, f"the message after {request_id} was not processed"
