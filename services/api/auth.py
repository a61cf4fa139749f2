"""Who is calling and for which tenant: the API key (HTTP bearer) and the tenant, as FastAPI dependencies.

`Tenant` is what a handler declares (``tenant: Tenant``); FastAPI resolves it from the ``Authorization:
Bearer <key>`` header (a declared security scheme, so ``/docs`` shows how to authenticate) and the
``X-Tenant`` header or ``?tenant=`` query. The keys come from the replica's settings
(`ServeSettings.api_keys`: key → the tenant it is bound to, or ``*`` for any), put on the app's state
by the deployment when it starts.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.http import ApiError, ApiReason
from twinstream.contracts import DEFAULT_TENANT, InputError
from twinstream.names import check_name

ANY_TENANT = "*"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from TWINSTREAM_SERVE__API_KEYS (required when any key is configured). A key "
    "bound to one tenant may only use that tenant; a key bound to `*` may name any.",
)


def api_keys_of(request: Request) -> dict[str, str]:
    """The keys the deployment put on the app's state (none: authentication is off)."""
    return dict(getattr(request.app.state, "api_keys", {}) or {})


def _bound_tenant(keys: dict[str, str], credentials: HTTPAuthorizationCredentials | None) -> str:
    """The tenant the presented key is bound to (``*`` for any), or 401."""
    token = credentials.credentials if credentials is not None else ""
    matches = [tenant for key, tenant in keys.items() if hmac.compare_digest(key.encode(), token.encode())]
    if not token or not matches:
        raise ApiError(401, ApiReason.UNAUTHORIZED, "a valid API key is required (Authorization: Bearer …)")
    return matches[0]


async def current_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_tenant: Annotated[
        str | None, Header(alias="X-Tenant", description="tenant (gallery namespace); default: the key's")
    ] = None,
    tenant: Annotated[str | None, Query(description="tenant, when a header cannot be set")] = None,
) -> str:
    """The request's tenant, checked against its API key.

    Raises:
        ApiError: 401 without a valid key (when keys are configured), 403 for a tenant the key may not
            use, 400 for a malformed tenant id.
    """
    asked = x_tenant or tenant or ""
    keys = api_keys_of(request)
    bound = _bound_tenant(keys, credentials) if keys else ANY_TENANT
    if bound != ANY_TENANT and asked and asked != bound:
        raise ApiError(403, ApiReason.FORBIDDEN, "this API key may not use that tenant")
    chosen = asked or (bound if bound != ANY_TENANT else DEFAULT_TENANT)
    try:
        return check_name("tenant", chosen)
    except InputError as exc:
        raise ApiError.from_input(exc) from None


#: Both dependencies are ``async``: they only compare strings, and FastAPI runs a plain ``def``
#: dependency in a worker thread, one thread hop per request.
Tenant = Annotated[str, Depends(current_tenant)]


async def named_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    tenant: Annotated[str, Path(description="the tenant this resource belongs to")],
) -> str:
    """The tenant named in the path, checked against the API key (for ``/v1/tenants/{tenant}/…``).

    Raises:
        ApiError: 401 without a valid key (when keys are configured), 403 for a tenant the key may not
            use, 400 for a malformed tenant id.
    """
    keys = api_keys_of(request)
    bound = _bound_tenant(keys, credentials) if keys else ANY_TENANT
    if bound not in (ANY_TENANT, tenant):
        raise ApiError(403, ApiReason.FORBIDDEN, "this API key may not use that tenant")
    try:
        return check_name("tenant", tenant)
    except InputError as exc:
        raise ApiError.from_input(exc) from None


NamedTenant = Annotated[str, Depends(named_tenant)]
