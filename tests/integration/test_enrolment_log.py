"""The enrolment log against a real Kafka broker: appends, tombstones, the compacted state, compaction."""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from services.lifecycle.enrolment_log import compacted_state, fold, records_of
from services.lifecycle.offsets import build_admin
from tests.support.lifecycle import (
    FAST_COMPACTION,
    digit_images,
    enrolment,
    lifecycle_settings,
    log_reader,
    log_writer,
    wait_until,
)
from twinstream.config import Settings

pytestmark = pytest.mark.integration


def test_the_log_topic_is_created_compacted_with_the_settings(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str
) -> None:
    settings = lifecycle_settings(stack_settings, unique_name)
    admin = build_admin(settings.kafka)
    topic = settings.kafka.enrolments_topic
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    actual = {key: config["value"] for key, config in described["topic"][topic].items()}
    wanted = settings.kafka.topic_configs()[topic]
    assert {key: actual.get(key) for key in wanted} == wanted
    assert actual["cleanup.policy"] == "compact"


def test_appends_and_tombstones_read_back_as_the_latest_value_per_image(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str
) -> None:
    settings = lifecycle_settings(stack_settings, unique_name)
    images = [png for _, png in digit_images(6)]
    first = [
        enrolment("t", f"s{i % 3}", png, at_ms=i, request_id=f"r{i}") for i, png in enumerate(images[:5])
    ]
    writer = log_writer(settings)
    writer.append(first)
    writer.tombstone([first[0].image_id, first[1].image_id, "f" * 32])  # an unknown id is harmless
    again = enrolment("t", "s0", images[0], at_ms=99, request_id="again")  # re-enrolled after its delete
    writer.append([again, enrolment("u", "s9", images[5])])
    writer.close()

    reader = log_reader(settings)
    state = compacted_state(reader)
    assert set(state) == {again.image_id, first[2].image_id, first[3].image_id, first[4].image_id} | {
        enrolment("u", "s9", images[5]).image_id
    }
    assert state[again.image_id] == again  # the later value replaced the tombstone
    assert state[first[3].image_id] == first[3]  # bytes, owner, content type, time and request id kept


def test_reading_from_given_offsets_yields_only_what_came_after(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str
) -> None:
    settings = lifecycle_settings(stack_settings, unique_name, partitions=1)
    images = [png for _, png in digit_images(4, seed=1)]
    writer = log_writer(settings)
    writer.append([enrolment("t", "a", images[0]), enrolment("t", "b", images[1])])
    reader = log_reader(settings)
    middle = reader.end_offsets()
    writer.append([enrolment("t", "c", images[2])])
    writer.tombstone([enrolment("t", "a", images[0]).image_id])
    writer.close()
    later = [event for batch in reader.batches(middle) for event in batch.events]
    assert [(e.enrolment.subject if e.enrolment else None) for e in later] == ["c", None]
    assert fold(later) == {
        enrolment("t", "c", images[2]).image_id: enrolment("t", "c", images[2]),
        enrolment("t", "a", images[0]).image_id: None,
    }


def test_compaction_leaves_no_record_of_a_tombstoned_image(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str
) -> None:
    settings = lifecycle_settings(stack_settings, unique_name, partitions=1, **FAST_COMPACTION)
    images = [png for _, png in digit_images(3, seed=2)]
    gone, kept = enrolment("t", "gone", images[0]), enrolment("t", "kept", images[1])
    writer = log_writer(settings)
    writer.append([gone, kept])
    writer.tombstone([gone.image_id])
    filler = enrolment("t", "filler", images[2])
    reader = log_reader(settings)

    def compacted() -> bool:
        writer.append([filler])  # rolls the active segment (never compacted) once segment.ms passed
        return records_of(reader, [gone.image_id]) == 0

    wait_until(
        compacted, deadline_s=120, what="the broker compacted away the image and its tombstone", every_s=1
    )
    assert set(compacted_state(reader)) == {kept.image_id, filler.image_id}
    writer.close()
