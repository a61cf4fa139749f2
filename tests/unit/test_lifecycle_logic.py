"""Pure parts of the lifecycle: folding log events, registry entries, what a result names (no services)."""

from __future__ import annotations

from services.lifecycle.enrolment_log import LogEvent, fold
from services.lifecycle.registry import RegistryKeys, VersionEntry
from services.matching.ports import LoggedEnrolment
from services.results.store import result_key, subjects_named
from twinstream.contracts import Candidate, Decision, MatchResult, Op


def _event(offset: int, image_id: str, subject: str | None) -> LogEvent:
    enrolment = LoggedEnrolment(image_id, "t", subject, b"x") if subject else None
    return LogEvent(0, offset, image_id, enrolment)


def test_the_last_event_per_image_wins_and_a_tombstone_folds_to_none() -> None:
    folded = fold([_event(0, "a", "s1"), _event(1, "b", "s2"), _event(2, "a", None), _event(3, "b", "s3")])
    assert list(folded) == ["a", "b"]
    assert folded["a"] is None
    assert folded["b"] is not None and folded["b"].subject == "s3"
    assert fold([_event(0, "a", None), _event(1, "a", "back")])["a"] is not None  # re-enrolled after delete


def test_a_registry_entry_parses_from_its_redis_hash() -> None:
    raw = {
        b"artifact": b"/m/v1", b"collection": b"tw_v1", b"dim": b"32", b"registered_at_ms": b"5",
        b"complete": b"1", b"offsets": b'{"0": 7, "1": 3}', b"gallery_size": b"9", b"images_per_s": b"812.5",
    }  # fmt: skip
    entry = VersionEntry.from_hash("v1", raw)
    assert entry == VersionEntry("v1", "/m/v1", "tw_v1", 32, 5, True, 0, {0: 7, 1: 3}, 9, 812.5)
    assert not VersionEntry.from_hash("v2", {b"artifact": b"/m/v2"}).complete


def test_registry_keys_are_per_serve_app_and_the_live_one_is_the_serving_sides() -> None:
    from services.api.served import live_key

    keys = RegistryKeys("acme")
    assert (keys.live, keys.previous, keys.versions) == (
        "twinstream:model:live:acme", "twinstream:model:previous:acme", "twinstream:model:versions:acme",
    )  # fmt: skip
    assert keys.version("v1") == "twinstream:model:version:acme:v1"
    assert keys.live == live_key("acme")  # the pointer the replicas read once per batch


def test_a_result_names_its_subject_and_every_candidate_and_is_keyed_by_tenant() -> None:
    result = MatchResult(
        "r1", Op.IDENTIFY, Decision.MATCH, tenant="acme", subject="bob",
        candidates=(Candidate("bob", 0.1, 0.9), Candidate("alice", 0.5, 0.2)),
    )  # fmt: skip
    assert subjects_named(result) == {"bob", "alice"}
    assert subjects_named(MatchResult("r2", Op.IDENTIFY, Decision.UNKNOWN)) == set()
    assert result_key("acme", "r1") == "twinstream:result:acme:r1" != result_key("other", "r1")
