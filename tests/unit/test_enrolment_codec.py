"""The enrolment log's record value round-trips through protobuf, and malformed values are refused."""

from __future__ import annotations

import pytest

from twinstream.codec.enrolments import (
    EnrolmentDecodeError,
    EnrolmentValue,
    decode_enrolment,
    encode_enrolment,
)


def test_an_enrolment_round_trips_with_its_image_bytes_untouched() -> None:
    value = EnrolmentValue("acme", "alice@x", b"\x89PNG\x00\xff" * 50, "image/png", 1_765_000_000_123, "r-1")
    encoded = encode_enrolment(value)
    assert decode_enrolment(encoded) == value
    assert len(encoded) < len(value.image) + 64  # bytes, not base64: a few bytes of framing only


@pytest.mark.parametrize(
    "value",
    [EnrolmentValue("", "s", b"x"), EnrolmentValue("t", "", b"x"), EnrolmentValue("t", "s", b"")],
)
def test_a_record_without_tenant_subject_or_image_is_refused(value: EnrolmentValue) -> None:
    with pytest.raises(EnrolmentDecodeError):
        decode_enrolment(encode_enrolment(value))


def test_bytes_that_are_not_a_record_are_refused() -> None:
    with pytest.raises(EnrolmentDecodeError):
        decode_enrolment(b"\xff\xff\xff\xff")
