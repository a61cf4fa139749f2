"""Re-index by replay against real Kafka, Milvus and Redis: exact, resumable after SIGKILL, follows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from services.embedder.model import TowerEmbedder
from services.gallery.client import connect
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import RedisGenerations
from services.lifecycle.enrolment_log import compacted_state
from services.lifecycle.offsets import LogOffsets, build_admin, reindex_group
from services.lifecycle.registry import ModelRegistry, RegistryKeys
from services.lifecycle.reindex import reindex
from services.matching.ports import LoggedEnrolment
from tests.support.lifecycle import (
    digit_images,
    enrolment,
    lifecycle_settings,
    log_reader,
    log_writer,
    wait_until,
)
from twinstream.config import Settings, write_settings_file
from twinstream.contracts import ImageRequest, Op
from twinstream.images.prepared import prepare
from twinstream.images.preprocess import normalize
from twinstream.model.artifact import load_artifact

pytestmark = pytest.mark.system
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def logged(
    stack_settings: Settings, unique_name: str, kafka_bootstrap: str
) -> Iterator[tuple[Settings, dict]]:
    """A fresh log of 50 enrolments (2 tenants), 5 of them deleted, 1 re-enrolled and 1 logged twice."""
    settings = lifecycle_settings(stack_settings, unique_name, partitions=2)
    images = digit_images(55, seed=3)
    entries = [
        enrolment(f"{unique_name}-{i % 2}", f"digit-{label}", png, at_ms=1000 + i, request_id=f"r{i}")
        for i, (label, png) in enumerate(images[:50])
    ]
    writer = log_writer(settings)
    writer.append(entries)
    writer.tombstone([e.image_id for e in entries[:5]])
    writer.append([entries[0], entries[10]])  # re-enrolled after its delete; the same image logged again
    writer.close()
    state = compacted_state(log_reader(settings))
    assert len(state) == 46
    yield settings, state


def _gallery(settings: Settings, version: str) -> MilvusGallery:
    from services.gallery.names import collection_name

    return MilvusGallery(
        connect(settings.milvus.uri), collection_name(settings.milvus.collection_prefix, version)
    )


def _ids_or_none(gallery: MilvusGallery) -> set[str] | None:
    """The collection's ids, or None while the re-index has not created it yet."""
    from pymilvus.exceptions import MilvusException

    try:
        return gallery.all_ids()
    except MilvusException:
        return None


def _raw_forward(
    model_dir: Path, entries: list[LoggedEnrolment], settings: Settings
) -> tuple[np.ndarray, float]:
    """The same images pre-processed as ingest does and embedded in one batched call: vectors, images/s."""
    embedder = TowerEmbedder(load_artifact(model_dir), threads=settings.lifecycle.reindex_threads)
    requests = [ImageRequest(e.image_id, Op.ENROLL, e.image, e.tenant, e.subject) for e in entries]
    batch, refused = prepare(requests, embedder.manifest.input, settings.limits)
    assert not refused
    tensors = normalize(batch.pixels, embedder.manifest.input)
    embedder.embed(tensors)  # warm-up
    best = min(_timed(lambda: embedder.embed(tensors)) for _ in range(5))
    return embedder.embed(tensors), len(entries) / best


def _timed(call: object) -> float:
    t0 = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - t0


def test_reindex_builds_the_new_versions_collection_exactly_from_the_log(
    logged: tuple[Settings, dict], model_dirs: tuple[Path, Path], milvus_uri: str, redis_url: str
) -> None:
    settings, state = logged
    new_model = model_dirs[1]
    version = load_artifact(new_model).manifest.version
    report = reindex(settings, new_model)

    gallery = _gallery(settings, version)
    assert gallery.all_ids() == set(state)
    assert gallery.count() == len(state)  # no duplicates: one row per image id
    assert report.caught_up and report.images + report.refused >= len(state) and report.refused == 0
    entries = sorted(state.values(), key=lambda e: e.image_id)
    expected, raw_per_s = _raw_forward(new_model, entries, settings)
    some = [(e.tenant, e.subject) for e in entries[:3]]
    got = gallery.vectors_of(some)
    for (tenant, subject), vectors in got.items():
        want = np.stack(
            [v for e, v in zip(entries, expected, strict=True) if (e.tenant, e.subject) == (tenant, subject)]
        )
        assert sorted(map(tuple, np.round(vectors, 4))) == sorted(map(tuple, np.round(want, 4)))
    entry = ModelRegistry(redis.Redis.from_url(redis_url), RegistryKeys.for_settings(settings)).get(version)
    assert entry is not None and entry.complete and entry.gallery_size == len(state)
    assert entry.collection == gallery.collection and entry.artifact == str(new_model.resolve())
    tenants = sorted({e.tenant for e in entries})
    assert all(
        g > 0
        for g in RedisGenerations(redis.Redis.from_url(redis_url), gallery.collection)
        .current(tenants)
        .values()
    )
    print(
        f"\nre-index: {report.images} images in {report.seconds:.2f} s = {report.images_per_s:.1f} images/s "
        f"(forward {report.embed_seconds:.3f} s); raw batched forward of the same model and images: "
        f"{raw_per_s:.0f} images/s; ratio {report.images_per_s / raw_per_s:.3f}"
    )
    assert reindex(settings, new_model).records == 0  # a second run has nothing left to do


def test_a_reindex_killed_half_way_resumes_and_the_collection_ends_exact(
    logged: tuple[Settings, dict],
    model_dirs: tuple[Path, Path],
    milvus_uri: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    settings, state = logged
    settings.lifecycle = settings.lifecycle.model_copy(update={"reindex_batch": 4})
    model = model_dirs[0]
    version = load_artifact(model).manifest.version
    settings_file = write_settings_file(settings, tmp_path / "settings.json")
    command = [
        sys.executable,
        "-m",
        "services.lifecycle.reindex",
        "--model",
        str(model),
        "--settings-file",
        str(settings_file),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    committed, lines = 0, []
    assert proc.stderr is not None
    for line in proc.stderr:  # observed: kill right after the third committed batch is logged
        lines.append(line)
        if "committed batch" in line:
            committed += 1
            if committed == 3:
                proc.send_signal(signal.SIGKILL)
                break
    assert proc.wait(timeout=60) == -signal.SIGKILL, "".join(lines[-30:])

    reader = log_reader(settings)
    admin = build_admin(settings.kafka)
    offsets = LogOffsets(admin, reader)
    group = reindex_group(settings, version)
    end = offsets.end()
    lag_at_kill = offsets.lag(group, end)
    total = offsets.lag(f"{group}-never", end)
    assert 0 < lag_at_kill < total, "the run was killed part way, with some batches committed"
    entry = ModelRegistry(redis.Redis.from_url(redis_url), RegistryKeys.for_settings(settings)).get(version)
    assert entry is not None and not entry.complete

    resumed = reindex(settings, model)
    print(
        f"\nkilled after {committed} logged batches with {total - lag_at_kill}/{total} records committed; "
        f"the rerun read {resumed.records} records"
    )
    assert resumed.records <= lag_at_kill + settings.lifecycle.reindex_batch  # resumed, not from the start
    gallery = _gallery(settings, version)
    assert gallery.all_ids() == set(state)
    assert gallery.count() == len(state)
    assert offsets.lag(group) == 0
    admin.close()


def test_follow_applies_enrolments_and_deletes_that_arrive_while_it_runs(
    logged: tuple[Settings, dict], model_dirs: tuple[Path, Path], milvus_uri: str, redis_url: str
) -> None:
    settings, state = logged
    model = model_dirs[1]
    version = load_artifact(model).manifest.version
    stop = threading.Event()
    reports: list = []
    runner = threading.Thread(target=lambda: reports.append(reindex(settings, model, follow=True, stop=stop)))
    runner.start()
    gallery = _gallery(settings, version)
    try:
        wait_until(lambda: _ids_or_none(gallery) == set(state), 120, "the initial replay")
        newcomer = enrolment("late", "digit-late", digit_images(56, seed=3)[55][1])
        writer = log_writer(settings)
        writer.append([newcomer])
        removed = next(iter(state))
        writer.tombstone([removed])
        writer.close()
        wait_until(
            lambda: gallery.all_ids() == (set(state) - {removed}) | {newcomer.image_id}, 60, "the follow"
        )
    finally:
        stop.set()
        runner.join(timeout=60)
    assert reports and reports[0].caught_up


def test_restart_drops_the_collection_and_replays_the_whole_log(
    logged: tuple[Settings, dict], model_dirs: tuple[Path, Path], milvus_uri: str, redis_url: str
) -> None:
    settings, state = logged
    model = model_dirs[0]
    first = reindex(settings, model, restart=True)  # no group, no collection yet: a plain first run
    gallery = _gallery(settings, load_artifact(model).manifest.version)
    gallery.delete_ids(sorted(state)[:3])  # damage the collection (a re-index paused too long, say)
    assert gallery.count() == len(state) - 3
    again = reindex(settings, model, restart=True)
    assert again.records == first.records and again.caught_up
    assert gallery.all_ids() == set(state) and gallery.count() == len(state)
