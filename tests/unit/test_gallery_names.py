"""Gallery names: collection per version, validated ids, injection-proof filters, deterministic image ids."""

from __future__ import annotations

import pytest

from services.gallery.milvus_gallery import cosine_to_euclidean
from services.gallery.names import collection_name, ids_filter, literal, subjects_filter
from twinstream.contracts import InputError, RejectReason
from twinstream.names import check_name, image_id


def test_collection_name_is_milvus_safe_and_per_version() -> None:
    a = collection_name("twinstream", "v20261128_202148_3f9a1c")
    b = collection_name("twinstream", "v20261128_202148_000000")
    assert a != b
    assert collection_name("ts", "1.2-beta") == "ts_1_2_beta"
    assert collection_name("9x", "v").startswith("c_")


@pytest.mark.parametrize(
    "bad", ['a"b', "a b", "x\\y", 'x" or tenant != "', "", "a" * 65, "é", "acme\n", "a:b", "-x"]
)
def test_malformed_tenant_is_refused(bad: str) -> None:
    with pytest.raises(InputError) as info:
        check_name("tenant", bad)
    assert info.value.reason == RejectReason.BAD_HEADER


def test_empty_subject_is_missing_subject() -> None:
    with pytest.raises(InputError) as info:
        check_name("subject", "")
    assert info.value.reason == RejectReason.MISSING_SUBJECT


def test_valid_names_pass_unchanged() -> None:
    assert check_name("subject", "alice.smith@uni-1:42+x") == "alice.smith@uni-1:42+x"


def test_literal_refuses_unvalidated_values() -> None:
    with pytest.raises(ValueError, match="unvalidated"):
        literal('a" or 1==1 or "')


def test_subjects_filter_always_binds_tenant() -> None:
    expr = subjects_filter([("a", "s1"), ("b", "s2"), ("a", "s3")])
    assert expr == '(tenant == "a" and subject in ["s1", "s3"]) or (tenant == "b" and subject in ["s2"])'
    assert ids_filter(["ab", "cd"]) == 'id in ["ab", "cd"]'


def test_image_id_depends_on_tenant_subject_and_bytes() -> None:
    base = image_id("t", "s", "d")
    assert base == image_id("t", "s", "d")
    assert len({base, image_id("t2", "s", "d"), image_id("t", "s2", "d"), image_id("t", "s", "d2")}) == 4
    assert image_id("ab", "c", "d") != image_id("a", "bc", "d")


def test_cosine_converts_to_unit_sphere_euclidean_distance() -> None:
    assert cosine_to_euclidean(1.0) == pytest.approx(0.0)
    assert cosine_to_euclidean(0.0) == pytest.approx(2**0.5)
    assert cosine_to_euclidean(-1.0) == pytest.approx(2.0)
    assert cosine_to_euclidean(1.0000001) == 0.0
