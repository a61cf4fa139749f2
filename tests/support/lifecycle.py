"""Helpers for the model-lifecycle tests: per-test settings (own log topic, collections, groups), images."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cli.stack.kafka_admin import ensure_topics
from services.lifecycle.enrolment_log import (
    EnrolmentLogReader,
    KafkaEnrolmentLog,
    build_log_consumer,
    build_log_producer,
)
from services.matching.ports import LoggedEnrolment
from tests.support.serving import png_bytes
from twinstream.config import Settings
from twinstream.images.decode import image_digest
from twinstream.model.artifact import MANIFEST_FILE, Manifest
from twinstream.names import image_id

#: Topic configs that make the broker compact within seconds (the test stack's cleaner backs off 2 s).
FAST_COMPACTION = {
    "enrolments_segment_ms": 200,
    "enrolments_min_cleanable_dirty_ratio": 0.01,
    "enrolments_delete_retention_ms": 200,
    "enrolments_max_compaction_lag_ms": 200,
}


def lifecycle_settings(base: Settings, name: str, *, partitions: int = 2, **kafka: object) -> Settings:
    """A copy of ``base`` with its own enrolment log (created here), collections and re-index groups."""
    settings = base.model_copy(deep=True)
    settings.kafka = settings.kafka.model_copy(
        update={"enrolments_topic": f"{name}.enrolments", "partitions": partitions, **kafka}
    )
    settings.milvus = settings.milvus.model_copy(update={"collection_prefix": name})
    settings.serve = settings.serve.model_copy(update={"app_name": name})  # its own registry and pointers
    settings.lifecycle = settings.lifecycle.model_copy(
        update={"reindex_group_prefix": f"{name}-reindex", "switch_grace_s": 0.0}
    )
    ensure_topics(settings, {settings.kafka.enrolments_topic: partitions})
    return settings


def log_writer(settings: Settings) -> KafkaEnrolmentLog:
    return KafkaEnrolmentLog(build_log_producer(settings.kafka), settings.kafka.enrolments_topic)


def log_reader(settings: Settings) -> EnrolmentLogReader:
    return EnrolmentLogReader(build_log_consumer(settings.kafka), settings.kafka.enrolments_topic)


def digit_images(count: int, seed: int = 0) -> list[tuple[int, bytes]]:
    """(label, PNG bytes) of scikit-learn digits (8x8, scaled to 0-255), distinct images."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))[:count]
    return [
        (
            int(digits.target[i]),
            png_bytes(Image.fromarray((digits.images[i] * 16).clip(0, 255).astype(np.uint8))),
        )
        for i in order
    ]


def enrolment(
    tenant: str, subject: str, image: bytes, at_ms: int = 1, request_id: str = ""
) -> LoggedEnrolment:
    """The log entry of one enrolment (image id as the pipeline computes it)."""
    return LoggedEnrolment(
        image_id(tenant, subject, image_digest(image)), tenant, subject, image, "image/png", at_ms, request_id
    )


def copy_as_version(model_dir: Path, out_dir: Path, version: str) -> Path:
    """The same artifact under another version id (a second model version with identical weights)."""
    import shutil

    target = out_dir / version
    shutil.copytree(model_dir, target)
    manifest = Manifest.from_json((target / MANIFEST_FILE).read_text())
    fields = {name: getattr(manifest, name) for name in Manifest.__dataclass_fields__}
    (target / MANIFEST_FILE).write_text(Manifest(**{**fields, "version": version}).to_json())
    return target


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str, every_s: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``deadline_s`` (a deadline)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline_s:.0f} s: {what}")
        time.sleep(every_s)
