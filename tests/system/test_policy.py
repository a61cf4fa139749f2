"""Per-tenant operating points against real Redis, Serve and Kafka: set over HTTP, applied by every path
of that tenant within seconds, and by no other tenant."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.ingest.serve_pipeline import ServePipeline
from tests.support.serving import ServedApp
from tests.support.streams import (
    by_request,
    collect_results,
    digit_png,
    producer_for,
    stream_settings,
    worker_thread,
)
from tests.support.waiting import wait_until
from twinstream.config import Settings
from twinstream.contracts import Decision, PolicyKind

pytestmark = pytest.mark.system
STRICT, LOOSE = 1e-7, 0.5
PNG = {"Content-Type": "image/png"}


def _policy(http: httpx.Client, tenant: str, far: float) -> dict[str, object]:
    answer = http.put(f"/v1/tenants/{tenant}/policy", json={"verify_far": far})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _verify(http: httpx.Client, tenant: str, probe: bytes) -> dict[str, object]:
    answer = http.post("/v1/subjects/s/verify", content=probe, headers={**PNG, "X-Tenant": tenant})
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def tenants(served_app: ServedApp, unique_name: str) -> Iterator[tuple[str, str, bytes]]:
    """Two tenants with the same subject enrolled, and a probe whose distance lies between the strict and
    the loose verify thresholds (found among images of the enrolled digit's class)."""
    a, b = f"{unique_name}-a", f"{unique_name}-b"
    enrolled = digit_png(0)  # a zero
    with served_app.client() as http:
        for tenant in (a, b):
            assert (
                http.post(
                    "/v1/subjects/s/images", content=enrolled, headers={**PNG, "X-Tenant": tenant}
                ).status_code
                == 201
            )
        strict, loose = _policy(http, a, STRICT), _policy(http, b, LOOSE)
        low, high = strict["verify"]["threshold"], loose["verify"]["threshold"]  # type: ignore[index]
        for index in (10, 20, 30, 36, 49, 55, 72, 79, 80, 90):  # other zeros of scikit-learn's digits
            probe = digit_png(index)
            if low < float(_verify(http, b, probe)["distance"]) <= high:  # type: ignore[arg-type]
                yield a, b, probe
                return
    pytest.fail("no zero of the digits set lies between the strict and the loose verify thresholds")


def test_a_policy_set_over_http_changes_the_next_http_and_kafka_decisions_of_its_tenant_only(
    served_app: ServedApp, kafka_bootstrap: str, tenants: tuple[str, str, bytes], unique_name: str
) -> None:
    a, b, probe = tenants
    with served_app.client() as http:
        first_a, first_b = _verify(http, a, probe), _verify(http, b, probe)
        assert (first_a["decision"], first_b["decision"]) == ("NO_MATCH", "MATCH")
        assert first_a["policy"]["kind"] == PolicyKind.FAR and first_a["policy"]["target"] == STRICT  # type: ignore[index]
        _policy(http, a, LOOSE)  # tenant a turns loose; b is not touched
        wait_until(
            lambda: _verify(http, a, probe)["decision"] == "MATCH", 10, "tenant a's HTTP verify to MATCH"
        )
        assert _verify(http, b, probe)["decision"] == "MATCH"
        _policy(http, b, STRICT)  # and b turns strict: a keeps its loose point
        wait_until(lambda: _verify(http, b, probe)["decision"] == "NO_MATCH", 10, "tenant b's verify to turn")
        assert _verify(http, a, probe)["decision"] == "MATCH"
    settings = stream_settings(served_app.settings, unique_name)
    with worker_thread(settings, ServePipeline(settings)):
        producer = producer_for(settings)
        for tenant in (a, b):
            headers = [
                ("op", b"verify"),
                ("subject", b"s"),
                ("tenant", tenant.encode()),
                ("request-id", tenant.encode()),
            ]
            producer.send(settings.kafka.images_topic, value=probe, headers=headers)
        producer.flush()
        producer.close()
        results = by_request(collect_results(settings, 2))
    (on_a,), (on_b,) = results[a], results[b]
    assert on_a.decision == Decision.MATCH and on_a.policy is not None and on_a.policy.target == LOOSE
    assert on_b.decision == Decision.NO_MATCH and on_b.policy is not None and on_b.policy.target == STRICT


def test_a_policy_outside_the_allowed_range_is_refused_with_the_range(
    served_app: ServedApp, unique_name: str
) -> None:
    with served_app.client() as http:
        answer = http.put(f"/v1/tenants/{unique_name}/policy", json={"identify_fpir": 0.9})
        assert answer.status_code == 422
        assert (
            "identify_fpir" in answer.json()["detail"]
            and "less than or equal to 0.5" in answer.json()["detail"]
        )
        answer = http.put(f"/v1/tenants/{unique_name}/policy", json={"verify_far": 0})
        assert answer.status_code == 422
        assert "greater than or equal to 0.0000001" in answer.json()["detail"]
        shown = http.get(f"/v1/tenants/{unique_name}/policy").json()
    defaults = Settings().policy
    assert (shown["verify_far"], shown["identify_fpir"]) == (defaults.verify_far, defaults.identify_fpir)
    assert 0 < shown["identify"]["threshold"] <= 2 and 0 < shown["verify"]["min_probability"] < 1


def test_a_key_bound_to_one_tenant_may_not_read_or_set_another_tenant_s_policy(served_app: ServedApp) -> None:
    from tests.support.serving import BOUND_TENANT, TENANT_KEY

    with served_app.client(TENANT_KEY) as http:
        assert http.get(f"/v1/tenants/{BOUND_TENANT}/policy").status_code == 200
        assert http.get("/v1/tenants/someone-else/policy").status_code == 403
        assert http.put("/v1/tenants/someone-else/policy", json={"verify_far": 0.1}).status_code == 403
