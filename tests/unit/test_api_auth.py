"""The API key and tenant dependencies, through a real FastAPI app (what `/docs` and handlers see)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.api.auth import Tenant
from services.api.routes import install_error_handlers

KEYS = {"k-all": "*", "k-acme": "acme"}


def _client(keys: dict[str, str]) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.state.api_keys = keys

    @app.get("/whoami")
    async def whoami(tenant: Tenant) -> dict[str, str]:
        return {"tenant": tenant}

    return TestClient(app)


@pytest.fixture
def keyed() -> TestClient:
    return _client(KEYS)


def test_without_keys_tenant_comes_from_header_query_or_default() -> None:
    client = _client({})
    assert client.get("/whoami", headers={"X-Tenant": "a"}).json() == {"tenant": "a"}
    assert client.get("/whoami", params={"tenant": "b"}).json() == {"tenant": "b"}
    assert client.get("/whoami").json() == {"tenant": "default"}


def test_missing_or_wrong_key_is_401(keyed: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k-all"}):
        answer = keyed.get("/whoami", headers=headers)
        assert answer.status_code == 401 and answer.json()["reason"] == "unauthorized"


def test_a_bound_key_defaults_to_its_tenant_and_is_refused_others(keyed: TestClient) -> None:
    auth = {"Authorization": "Bearer k-acme"}
    assert keyed.get("/whoami", headers=auth).json() == {"tenant": "acme"}
    assert keyed.get("/whoami", headers={**auth, "X-Tenant": "acme"}).json() == {"tenant": "acme"}
    refused = keyed.get("/whoami", headers={**auth, "X-Tenant": "other"})
    assert (refused.status_code, refused.json()["reason"]) == (403, "forbidden")
    assert keyed.get("/whoami", headers=auth, params={"tenant": "other"}).status_code == 403


def test_a_wildcard_key_may_use_any_tenant(keyed: TestClient) -> None:
    answer = keyed.get("/whoami", headers={"Authorization": "Bearer k-all", "X-Tenant": "zz"})
    assert answer.json() == {"tenant": "zz"}


@pytest.mark.parametrize("tenant", ['a" or 1', "acme\n", "x" * 65])
def test_a_malformed_tenant_is_400_bad_header(tenant: str) -> None:
    answer = _client({}).get("/whoami", params={"tenant": tenant})
    assert (answer.status_code, answer.json()["reason"]) == (400, "bad-header")


def test_openapi_declares_the_bearer_scheme_and_the_tenant_header() -> None:
    spec = _client(KEYS).get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["ApiKey"][
            "description"]}  # fmt: skip
    params = {p["name"]: p for p in spec["paths"]["/whoami"]["get"]["parameters"]}
    assert params["X-Tenant"]["in"] == "header" and params["tenant"]["in"] == "query"
    assert spec["paths"]["/whoami"]["get"]["security"] == [{"ApiKey": []}]
