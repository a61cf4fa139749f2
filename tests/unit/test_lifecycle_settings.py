"""Topic settings: raw images expire, the enrolment log is compacted, and every value comes from Settings."""

from __future__ import annotations

from twinstream.config import load_settings


def test_the_enrolment_log_is_compacted_and_keeps_live_enrolments_forever_by_default() -> None:
    configs = load_settings().kafka.topic_configs()
    log = configs["twinstream.enrolments"]
    assert log["cleanup.policy"] == "compact"
    assert log["retention.ms"] == "-1"
    assert {"segment.ms", "min.cleanable.dirty.ratio", "delete.retention.ms", "max.compaction.lag.ms"} <= set(
        log
    )


def test_a_retention_on_the_log_adds_the_delete_policy() -> None:
    kafka = load_settings(kafka={"enrolments_retention_ms": 3_600_000}).kafka
    assert kafka.topic_configs()[kafka.enrolments_topic]["cleanup.policy"] == "compact,delete"


def test_raw_images_have_a_retention_and_the_ledger_outlives_the_longest() -> None:
    kafka = load_settings(kafka={"images_retention_ms": 3_600_000, "dlq_retention_ms": 7_200_000}).kafka
    configs = kafka.topic_configs()
    assert configs[kafka.images_topic]["retention.ms"] == "3600000"
    assert configs[kafka.dlq_topic]["retention.ms"] == "7200000"
    assert "retention.ms" not in configs[kafka.results_topic]
    assert kafka.raw_image_retention_s == 7200
