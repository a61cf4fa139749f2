"""Tenants bound to topics: the names, and a record's tenant coming from its topic, never from a header."""

from __future__ import annotations

import re

import pytest

from twinstream.codec import KafkaRecord, RecordRejection, decode_record, encode_image_event
from twinstream.config import LimitsSettings, load_settings
from twinstream.contracts import ImageRequest, Op, RejectReason
from twinstream.tenant_topics import (
    InvalidTenantError,
    TopicTenancy,
    images_topic_for,
    results_topic_for,
    shared_topics,
    tenant_group_prefix,
    tenant_user,
)

LIMITS = LimitsSettings()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
TENANCY = TopicTenancy("twinstream.images", "twinstream.results")


def record(topic: str, value: bytes = PNG, **headers: str) -> KafkaRecord:
    encoded = tuple((name.replace("_", "-"), text.encode()) for name, text in headers.items())
    return KafkaRecord(topic, 0, 3, value, encoded, timestamp_ms=1)


def test_each_tenant_has_its_own_topics_user_and_group_prefix() -> None:
    assert TENANCY.images_topic_of("acme") == "twinstream.images.acme"
    assert TENANCY.results_topic_of("acme") == "twinstream.results.acme"
    assert tenant_user("acme") == "tenant.acme"
    assert tenant_group_prefix("acme") == "tenant.acme."


def test_the_ingest_pattern_matches_tenant_images_topics_only() -> None:
    pattern = re.compile(TENANCY.images_pattern)
    assert pattern.match("twinstream.images.acme")
    assert pattern.match("twinstream.images.class-7a_b")
    for other in (
        "twinstream.images",
        "twinstream.results.acme",
        "twinstream.imagesXacme",
        "twinstream.images.a.b",
    ):
        assert not pattern.match(other), other
    assert TENANCY.tenant_of("twinstream.images.class-7a") == "class-7a"
    assert TENANCY.tenant_of("twinstream.images") is None


@pytest.mark.parametrize("tenant", ["", "a.b", "-x", "a:b", "x" * 65, "white space"])
def test_names_that_could_alias_another_tenant_are_refused(tenant: str) -> None:
    # Without dots, no tenant's topic, user or group prefix starts with another tenant's.
    with pytest.raises(InvalidTenantError):
        tenant_user(tenant)
    with pytest.raises(InvalidTenantError):
        TENANCY.images_topic_of(tenant)


def test_producers_and_readers_pick_the_topic_of_the_binding() -> None:
    header = load_settings().kafka
    topic = load_settings(kafka={"tenant_binding": "topic"}).kafka
    assert images_topic_for(header, "acme") == "twinstream.images"
    assert results_topic_for(header, "acme") == "twinstream.results"
    assert images_topic_for(topic, "acme") == "twinstream.images.acme"
    assert results_topic_for(topic, "acme") == "twinstream.results.acme"
    assert TopicTenancy.from_settings(header) is None
    assert shared_topics(topic) == ("twinstream.dlq",)
    assert shared_topics(header) == ("twinstream.images", "twinstream.results", "twinstream.dlq")


def test_in_topic_binding_the_tenant_is_the_topics() -> None:
    request = decode_record(record("twinstream.images.acme", op="enroll", subject="ann"), LIMITS, TENANCY)
    assert isinstance(request, ImageRequest)
    assert request.tenant == "acme"


def test_a_tenant_header_equal_to_the_topics_tenant_is_accepted() -> None:
    rec = record("twinstream.images.acme", op="verify", subject="ann", tenant="acme")
    request = decode_record(rec, LIMITS, TENANCY)
    assert isinstance(request, ImageRequest)
    assert request.tenant == "acme"


def test_a_tenant_header_naming_another_tenant_is_refused_as_bad_header() -> None:
    rec = record("twinstream.images.acme", op="delete", subject="ann", tenant="victim")
    refused = decode_record(rec, LIMITS, TENANCY)
    assert isinstance(refused, RecordRejection)
    assert refused.rejection.reason is RejectReason.BAD_HEADER
    assert "victim" in refused.rejection.detail
    # The refusal is answered to the topic's tenant: nothing about it reaches the named one.
    assert refused.tenant == "acme"
    assert refused.to_result().tenant == "acme"


def test_an_envelope_naming_another_tenant_is_refused_too() -> None:
    request = ImageRequest("r1", Op.ENROLL, PNG, "victim", "ann", 5, "image/png", 1)
    value, headers = encode_image_event(request)
    rec = KafkaRecord("twinstream.images.acme", 0, 1, value, tuple(headers))
    refused = decode_record(rec, LIMITS, TENANCY)
    assert isinstance(refused, RecordRejection)
    assert refused.rejection.reason is RejectReason.BAD_HEADER
    assert refused.tenant == "acme"


def test_a_record_from_no_tenants_topic_is_refused_in_topic_binding() -> None:
    refused = decode_record(record("twinstream.images", op="identify", tenant="acme"), LIMITS, TENANCY)
    assert isinstance(refused, RecordRejection)
    assert refused.rejection.reason is RejectReason.BAD_HEADER


def test_header_binding_still_takes_the_tenant_from_the_header() -> None:
    request = decode_record(record("twinstream.images", op="identify", tenant="acme"), LIMITS)
    assert isinstance(request, ImageRequest)
    assert request.tenant == "acme"
